"""Published known answers for firmware.security.aes (pure-Python AES, single blocks).

These run under CPython (pytest) and MicroPython (tools/mpy_runner.mjs). The CPython
cross-check against the cryptography package on random keys and blocks is in
tests/test_aes_dukpt.py.

Sources:
- FIPS 197 Appendix A (key expansion: the last round key of each example key),
  Appendix B (the cipher example) and Appendix C (example vectors for AES-128, -192
  and -256).
- NIST SP 800-38A F.1 (ECB-AES128/192/256, first block).
- FIPS 197 figure 7 (S-box entries).
"""
import binascii

from firmware.security import aes


def h(text):
    return binascii.unhexlify(text.replace(" ", ""))


def hx(data):
    return binascii.hexlify(bytes(data)).decode()


def raises(exc_type, fn, *args):
    try:
        fn(*args)
    except exc_type as exc:
        return str(exc)
    raise AssertionError("%s not raised" % exc_type.__name__)


# key, plaintext, ciphertext
KNOWN = (
    # FIPS 197 Appendix B
    ("2b7e151628aed2a6abf7158809cf4f3c", "3243f6a8885a308d313198a2e0370734",
     "3925841d02dc09fbdc118597196a0b32"),
    # FIPS 197 Appendix C.1, C.2, C.3
    ("000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
     "69c4e0d86a7b0430d8cdb78070b4c55a"),
    ("000102030405060708090a0b0c0d0e0f1011121314151617", "00112233445566778899aabbccddeeff",
     "dda97ca4864cdfe06eaf70a0ec0d7191"),
    ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "00112233445566778899aabbccddeeff", "8ea2b7ca516745bfeafc49904b496089"),
    # SP 800-38A F.1.1, F.1.3, F.1.5 (ECB, block #1)
    ("2b7e151628aed2a6abf7158809cf4f3c", "6bc1bee22e409f96e93d7e117393172a",
     "3ad77bb40d7a3660a89ecaf32466ef97"),
    ("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b", "6bc1bee22e409f96e93d7e117393172a",
     "bd334f1d6e45f25ff712a214571fa5cc"),
    ("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "6bc1bee22e409f96e93d7e117393172a", "f3eed1bdb5d2a03c064b5a7e3db181f8"),
)


def test_known_answers_encrypt_and_decrypt():
    for key, plain, cipher in KNOWN:
        c = aes.AES(h(key))
        assert hx(c.encrypt_block(h(plain))) == cipher, key
        assert hx(c.decrypt_block(h(cipher))) == plain, key
        # the one-shot helpers agree, and give bytearrays
        out = aes.encrypt_block(h(key), h(plain))
        assert isinstance(out, bytearray) and hx(out) == cipher
        assert hx(aes.decrypt_block(bytearray(h(key)), bytearray(h(cipher)))) == plain


def test_key_expansion_of_fips_197_appendix_a():
    # the last four words of each expanded key (w[40..43], w[48..51], w[56..59])
    cases = (
        ("2b7e151628aed2a6abf7158809cf4f3c", 10, "d014f9a8c9ee2589e13f0cc8b6630ca6"),
        ("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b", 12,
         "e98ba06f448c773c8ecc720401002202"),
        ("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 14,
         "fe4890d1e6188d0b046df344706c631e"),
    )
    for key, rounds, last in cases:
        c = aes.AES(h(key))
        assert c.rounds == rounds
        assert len(c._enc) == 4 * (rounds + 1)
        assert "".join("%08x" % w for w in c._enc[-4:]) == last, key
        # the first words are the key itself
        assert "".join("%08x" % w for w in c._enc[:len(h(key)) // 4]) == key


def test_sbox_is_the_standards():
    assert (aes.SBOX[0x00], aes.SBOX[0x01], aes.SBOX[0x53], aes.SBOX[0xFF]) == \
        (0x63, 0x7C, 0xED, 0x16)
    assert (aes.SBOX[0x10], aes.SBOX[0x9A], aes.SBOX[0xC9]) == (0xCA, 0xB8, 0xDD)
    assert sorted(aes.SBOX) == list(range(256))
    for x in range(256):
        assert aes.INV_SBOX[aes.SBOX[x]] == x
    # no fixed points and no opposite fixed points: a property of the AES S-box
    for x in range(256):
        assert aes.SBOX[x] != x and aes.SBOX[x] != x ^ 0xFF


def test_decrypt_undoes_encrypt_for_every_key_size():
    block = h("00112233445566778899aabbccddeeff")
    for size in aes.KEY_SIZES:
        key = bytes(range(0xA0, 0xA0 + size))
        c = aes.AES(key)
        once = c.encrypt_block(block)
        assert once != block
        assert c.decrypt_block(once) == block
        # a key one bit away gives another block
        other = bytearray(key)
        other[-1] ^= 1
        assert aes.encrypt_block(other, block) != once


def test_wrong_sizes_are_refused_with_the_size():
    assert "16, 24 or 32 bytes, got 15" in raises(ValueError, aes.AES, b"k" * 15)
    assert "got 33" in raises(ValueError, aes.AES, b"k" * 33)
    assert "not a str" in raises(TypeError, aes.AES, "k" * 16)
    c = aes.AES(b"k" * 16)
    assert "16 bytes, got 15" in raises(ValueError, c.encrypt_block, b"x" * 15)
    assert "16 bytes, got 17" in raises(ValueError, c.decrypt_block, b"x" * 17)


def test_wipe_zeroes_the_key_schedule():
    c = aes.AES(h("000102030405060708090a0b0c0d0e0f"))
    c.decrypt_block(bytes(16))            # builds the decryption schedule too
    enc, dec = c._enc, c._dec
    assert [w for w in enc if w] and [w for w in dec if w]
    c.wipe()
    assert not [w for w in enc if w] and not [w for w in dec if w]
    assert "wiped" in raises(ValueError, c.encrypt_block, bytes(16))
    assert "wiped" in raises(ValueError, c.decrypt_block, bytes(16))
