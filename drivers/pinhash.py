"""Operator PIN hashing on the device: scrypt, with a pepper from the key hierarchy.

A 4-digit PIN has 10,000 values: whatever the hash, a copied database alone would fall
to a search of all of them. Two things stop that here:
- the pepper: HMAC-SHA256(pepper, PIN) goes into scrypt, and the pepper is wrapped
  under the device key root (drivers/keystore.py): without the device, the database's
  hashes cannot even be searched;
- scrypt's memory (N=2^14, r=8: 16 MiB a guess) makes each guess cost on the device's
  own CPU what a GPU cannot make much cheaper.
The core sees only the interface of firmware.security.auth (kdf, cost, hash);
MicroPython boards keep the portable PBKDF2 there.
"""
import hashlib
import hmac

KDF = "scrypt-pepper-v1"
DEFAULT_COST = 1 << 14          # scrypt N; r=8, p=1
R, P = 8, 1


class ScryptPepper:
    kdf = KDF

    def __init__(self, pepper, cost=DEFAULT_COST):
        if len(pepper) < 16:
            raise ValueError("the PIN pepper must be at least 16 bytes")
        if cost < 2 or cost & (cost - 1):
            raise ValueError("scrypt N must be a power of two")
        self._pepper = bytes(pepper)
        self.cost = cost

    def hash(self, pin, salt, cost):
        peppered = hmac.new(self._pepper, pin, hashlib.sha256).digest()
        return hashlib.scrypt(peppered, salt=bytes(salt), n=cost, r=R, p=P,
                              maxmem=256 * R * cost + (1 << 20), dklen=32)

    def __repr__(self):
        return "ScryptPepper(cost=%d)" % self.cost
