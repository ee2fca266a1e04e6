"""firmware.security.des against the `cryptography` package's TripleDES (CPython only).

The known-answer vectors are in tests/portable/test_dukpt_vectors.py; here random keys
and blocks show the pure-Python cipher agrees with OpenSSL's everywhere, not only on
the published points.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.security import des

pytest.importorskip("cryptography")
from cryptography.hazmat.primitives.ciphers import Cipher, modes  # noqa: E402

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES  # noqa: E402
except ImportError:            # cryptography < 43
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # noqa: E402


def _full(key):
    """The 24-byte K1 K2 K3 form (cryptography deprecates the shorter spellings)."""
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    return key


def ref_encrypt(key, data):
    enc = Cipher(TripleDES(_full(key)), modes.ECB()).encryptor()
    return enc.update(bytes(data)) + enc.finalize()


def ref_decrypt(key, data):
    dec = Cipher(TripleDES(_full(key)), modes.ECB()).decryptor()
    return dec.update(bytes(data)) + dec.finalize()


keys = st.sampled_from((8, 16, 24)).flatmap(lambda n: st.binary(min_size=n, max_size=n))
blocks = st.binary(min_size=8, max_size=8)


@settings(max_examples=400, deadline=None)
@given(key=keys, block=blocks)
def test_tdes_block_matches_cryptography(key, block):
    assert des.tdes_encrypt(key, block) == ref_encrypt(key, block)
    assert des.tdes_decrypt(key, block) == ref_decrypt(key, block)
    cipher = des.TDES(bytearray(key))
    assert cipher.decrypt(cipher.encrypt(block)) == block


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=8, max_size=8), block=blocks)
def test_single_des_matches_cryptography(key, block):
    assert des.des_encrypt(key, block) == ref_encrypt(key, block)
    assert des.des_decrypt(key, block) == ref_decrypt(key, block)
    cipher = des.DES(key)
    x = des.block_to_int(block)
    assert cipher.decrypt_int(cipher.encrypt_int(x)) == x


@settings(max_examples=150, deadline=None)
@given(key=keys, data=st.integers(1, 8).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n)))
def test_ecb_matches_cryptography(key, data):
    out = des.encrypt_ecb(key, data)
    assert isinstance(out, bytearray)
    assert bytes(out) == ref_encrypt(key, data)
    assert bytes(des.decrypt_ecb(key, out)) == data


@settings(max_examples=150, deadline=None)
@given(kek=st.binary(min_size=16, max_size=16), key=st.binary(min_size=16, max_size=16))
def test_encrypt_key_is_ecb_over_both_halves(kek, key):
    assert bytes(des.encrypt_key(kek, key)) == ref_encrypt(kek, key)


@settings(max_examples=100, deadline=None)
@given(key=keys, block=blocks)
def test_parity_bits_do_not_matter(key, block):
    flipped = bytes(b ^ 1 for b in key)          # the low bit of each byte is parity
    assert des.tdes_encrypt(flipped, block) == des.tdes_encrypt(key, block)


def test_every_single_bit_key_and_block():
    # SP 800-17 style sweeps: each plaintext bit under the weak-looking key, each key bit
    key = bytes.fromhex("0101010101010101")
    for bit in range(64):
        block = (1 << (63 - bit)).to_bytes(8, "big")
        assert des.des_encrypt(key, block) == ref_encrypt(key, block)
    zero = bytes(8)
    for bit in range(64):
        k = bytes(a | b for a, b in zip(key, (1 << (63 - bit)).to_bytes(8, "big")))
        assert des.des_encrypt(k, zero) == ref_encrypt(k, zero)
