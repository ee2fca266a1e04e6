"""TR-31 key blocks as provisioning takes them (tools/tr31.py over psec): blocks built
by psec itself are accepted, a flipped MAC byte or a wrong usage, algorithm, mode of
use, exportability, version or KBPK is refused with one line, and the key check values
are the standard's (known vectors). Test keys only."""
import psec
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from firmware.security import dukpt
from tools import tr31

TEST_BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")     # ANSI X9.24-1 test BDK
TEST_KSN = "FFFF9876543210E00000"
TEST_IPEK = bytes.fromhex("6AC292FAA1315B4D858AB3A3D7D5933A")    # X9.24-1's, of that KSN
AES_KBPK = bytes.fromhex("0123456789ABCDEF" * 4)                  # test values only
TDES_KBPK = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")


def test_tdes_kcv_of_the_x924_test_bdk():
    # the published check value of the X9.24-1 test BDK (psec's docstring has its first
    # two bytes, 08D7)
    assert tr31.kcv(TEST_BDK, tr31.TDES) == "08D7B4"


def _aes_ecb(key, block):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _cmac_by_hand(key, block):
    """NIST SP 800-38B for one whole block, written out (K1 from L = E(0))."""
    big = int.from_bytes(_aes_ecb(key, bytes(16)), "big") << 1
    if big >> 128:
        big = (big & ((1 << 128) - 1)) ^ 0x87
    k1 = big.to_bytes(16, "big")
    return _aes_ecb(key, bytes(a ^ b for a, b in zip(block, k1)))


def test_aes_kcv_is_the_cmac_of_a_zero_block():
    # the hand-written CMAC meets RFC 4493's example 2 first ...
    rfc_key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    assert _cmac_by_hand(rfc_key, bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")) == \
        bytes.fromhex("070a16b46b4d4144f79bdd9dd04a287c")
    # ... then the KCV is its first 5 bytes over 16 zero bytes (X9.24-1-2017, PCI PIN 15-1)
    for key in (rfc_key, AES_KBPK, bytes(range(24))):
        assert tr31.kcv(key, tr31.AES) == _cmac_by_hand(key, bytes(16))[:5].hex().upper()
    assert len(tr31.kcv(AES_KBPK, tr31.AES)) == 10


def test_the_x924_ipek_in_a_psec_built_block_is_accepted():
    assert dukpt.derive_ipek(TEST_BDK, TEST_KSN) == TEST_IPEK      # the published vector
    header = psec.tr31.Header("D", "B1", "T", "X", "00", "N")
    header.blocks["KS"] = TEST_KSN
    block = psec.tr31.wrap(AES_KBPK, str(header), TEST_IPEK)
    key, h = tr31.open_block("dukpt_tdes", block, AES_KBPK, tr31.AES)
    assert key == TEST_IPEK
    assert tr31.initial_ksn(h) == TEST_KSN
    # a TDES KBPK takes version B blocks
    block = psec.tr31.wrap(TDES_KBPK, "B0000B1TX00N0100KS18" + TEST_KSN, TEST_IPEK)
    assert tr31.open_block("dukpt_tdes", block, TDES_KBPK, tr31.TDES)[0] == TEST_IPEK


def test_every_slot_takes_its_own_psec_block():
    for slot, key in (("data", bytes(range(32))), ("export", bytes(range(32, 64))),
                      ("export_sign", bytes(range(64, 96))), ("dukpt_aes", bytes(16)),
                      ("qr", b"handpos-test-qr-key-000000000001")):
        spec = tr31.SLOTS[slot]
        header = psec.tr31.Header("D", spec["usage"], spec["algorithm"], spec["modes"][0],
                                  "00", spec["export"][0])
        block = psec.tr31.wrap(AES_KBPK, str(header), key)
        assert tr31.open_block(slot, block, AES_KBPK, tr31.AES)[0] == key, slot


def _flip(block, at):
    c = block[at]
    return block[:at] + ("0" if c != "0" else "1") + block[at + 1:]


def test_a_flipped_mac_byte_is_refused():
    block = tr31.wrap("data", AES_KBPK, tr31.AES, bytes(range(32)))
    for at in (len(block) - 1, len(block) - 20, 40):     # the MAC, its start, the key data
        with pytest.raises(tr31.BlockRefused) as got:
            tr31.open_block("data", _flip(block, at), AES_KBPK, tr31.AES)
        assert "MAC does not verify" in str(got.value)
        assert "\n" not in str(got.value)


def test_a_changed_header_is_refused_by_the_mac():
    block = tr31.wrap("data", AES_KBPK, tr31.AES, bytes(range(32)))
    forged = block[:5] + "P0" + block[7:]           # usage D0 -> P0 without the KBPK
    with pytest.raises(tr31.BlockRefused) as got:
        tr31.open_block("data", forged, AES_KBPK, tr31.AES)
    assert "MAC does not verify" in str(got.value)


@pytest.mark.parametrize("slot, override, words", [
    ("data", {"key_usage": "P0"}, "key usage P0 (a PIN encryption key) is wrong for the data key"),
    ("dukpt_tdes", {"key_usage": "B0"}, "key usage B0 (a BDK) is wrong"),
    ("dukpt_tdes", {"mode_of_use": "E"}, "mode of use E (encrypt only) is wrong"),
    ("dukpt_tdes", {"algorithm": "A"}, "algorithm A (AES) is wrong"),
    ("data", {"exportability": "E"}, "exportability E (exportable) is wrong for the data key"),
    ("export", {"exportability": "N"}, "exportability N (not exportable) is wrong"),
])
def test_a_block_for_another_use_is_refused(slot, override, words):
    key = TEST_IPEK if slot.startswith("dukpt") else bytes(range(32))
    block = tr31.wrap(slot, AES_KBPK, tr31.AES, key, **override)
    with pytest.raises(tr31.BlockRefused) as got:
        tr31.open_block(slot, block, AES_KBPK, tr31.AES)
    assert words in str(got.value)


def test_a_data_key_block_is_not_taken_as_the_dukpt_key_nor_the_reverse():
    data = tr31.wrap("data", AES_KBPK, tr31.AES, bytes(range(32)))
    with pytest.raises(tr31.BlockRefused, match="key usage D0"):
        tr31.open_block("dukpt_aes", data, AES_KBPK, tr31.AES)
    ipek = tr31.wrap("dukpt_aes", AES_KBPK, tr31.AES, bytes(16))
    with pytest.raises(tr31.BlockRefused, match="key usage B1"):
        tr31.open_block("data", ipek, AES_KBPK, tr31.AES)


def test_versions_and_kbpks_that_do_not_fit_are_refused():
    other = bytes.fromhex("FEDCBA9876543210" * 4)
    block = tr31.wrap("data", other, tr31.AES, bytes(range(32)))
    with pytest.raises(tr31.BlockRefused, match="MAC does not verify"):
        tr31.open_block("data", block, AES_KBPK, tr31.AES)
    # KP names the KBPK: said plainly
    block = tr31.wrap("data", other, tr31.AES, bytes(range(32)),
                      blocks={"KP": "01" + tr31.kcv(other, tr31.AES)})
    with pytest.raises(tr31.BlockRefused, match="wrapped under another KBPK"):
        tr31.open_block("data", block, AES_KBPK, tr31.AES)
    block = psec.tr31.wrap(TDES_KBPK, "B0000B1TX00N0000", TEST_IPEK)
    with pytest.raises(tr31.BlockRefused, match="version B block, but the KBPK is AES"):
        tr31.open_block("dukpt_tdes", block, AES_KBPK, tr31.AES)
    block = psec.tr31.wrap(TDES_KBPK, "A0000B1TX00N0000", TEST_IPEK)
    with pytest.raises(tr31.BlockRefused, match="deprecated"):
        tr31.open_block("dukpt_tdes", block, TDES_KBPK, tr31.TDES)
    for junk in ("", "hello", "D0144" + "Z" * 139):
        with pytest.raises(tr31.BlockRefused):
            tr31.open_block("data", junk, AES_KBPK, tr31.AES)


def test_wrong_key_length_and_wrong_kc_are_refused():
    block = tr31.wrap("data", AES_KBPK, tr31.AES, bytes(16))
    with pytest.raises(tr31.BlockRefused, match="holds a key of 16 bytes"):
        tr31.open_block("data", block, AES_KBPK, tr31.AES)
    block = tr31.wrap("dukpt_tdes", AES_KBPK, tr31.AES, TEST_IPEK, blocks={"KC": "00123456"})
    with pytest.raises(tr31.BlockRefused, match="check value is not the one the block names"):
        tr31.open_block("dukpt_tdes", block, AES_KBPK, tr31.AES)


def test_ksn_from_the_block_or_the_file_and_both_must_agree():
    block = tr31.wrap("dukpt_tdes", AES_KBPK, tr31.AES, TEST_IPEK)
    h = tr31.open_block("dukpt_tdes", block, AES_KBPK, tr31.AES)[1]
    assert tr31.initial_ksn(h, TEST_KSN.lower()) == TEST_KSN
    with pytest.raises(tr31.BlockRefused, match="no initial KSN"):
        tr31.initial_ksn(h)
    block = tr31.wrap("dukpt_tdes", AES_KBPK, tr31.AES, TEST_IPEK, blocks={"KS": TEST_KSN})
    h = tr31.open_block("dukpt_tdes", block, AES_KBPK, tr31.AES)[1]
    with pytest.raises(tr31.BlockRefused, match="differs"):
        tr31.initial_ksn(h, "FFFF9876543210E10000")
