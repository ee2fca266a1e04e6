"""TR-31 (ANSI X9.143) key blocks as the terminal takes them at provisioning.

psec (PyPI) unwraps a block and checks its MAC; it does not judge what the key is for
("This library does NOT enforce or verify key block key usage, algorithm, mode of
use"). That is this module's job: every slot the terminal loads names the one usage,
algorithm, mode of use, exportability and key lengths it takes, and a block that is not
exactly that is refused, so a PIN key cannot be loaded as the data key, nor a key
meant for MACs as a DUKPT initial key.

Order of the checks, each refusal one line (BlockRefused):
  1. the text is a key block at all (psec parses the header);
  2. its version fits the KBPK: B (TDES key derivation binding) under a TDES KBPK, D
     (AES key derivation binding) under an AES KBPK; A and C (the variant binding
     methods, deprecated) are refused;
  3. an optional block KP (the KBPK's check value) that names another KBPK: said so,
     before the MAC would fail for the same reason less clearly;
  4. the MAC (psec), which also proves the header was not changed;
  5. usage, algorithm, mode of use, exportability, key length of the slot;
  6. an optional block KC (the wrapped key's check value) that does not match.

Key check values (KCV), ANSI X9.24-1-2017 as PCI PIN requirement 15-1 words it: TDES,
the first 3 bytes of the key encrypting a block of binary zeros; AES, the first 5 bytes
of the CMAC (NIST SP 800-38B) of a block of binary zeros. TR-31's KC/KP blocks carry
"00" + the legacy KCV or "01" + the CMAC KCV.
"""
import binascii
import warnings

import psec
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.utils import CryptographyDeprecationWarning

# TR-31 version B and the TDES DUKPT keys are two-key TDES, which is what X9.24-1 uses
warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)

TDES = "tdes"
AES = "aes"


class BlockRefused(ValueError):
    """A key block the terminal will not load; str() is the one line to show."""


def _tdes_cipher(key):
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:                 # cryptography before 43
        TripleDES = algorithms.TripleDES
    return Cipher(TripleDES(bytes(key)), modes.ECB())


def kcv(key, algorithm):
    """The key check value as upper-case hex: 6 digits for TDES (encrypt zeros), 10 for
    AES (CMAC of zeros)."""
    if algorithm == TDES:
        enc = _tdes_cipher(key).encryptor()
        return binascii.hexlify(enc.update(bytes(8)) + enc.finalize())[:6].decode().upper()
    if algorithm == AES:
        c = cmac.CMAC(algorithms.AES(bytes(key)))
        c.update(bytes(16))
        return binascii.hexlify(c.finalize()[:5]).decode().upper()
    raise ValueError("no KCV for algorithm %r" % algorithm)


def cmac_kcv(key, algorithm):
    """The CMAC check value of a TDES key (TR-31 KC/KP "01"): first 5 bytes of the TDES
    CMAC of a zero block. For AES the same as kcv()."""
    if algorithm == AES:
        return kcv(key, AES)
    c = cmac.CMAC(_tdes_cipher(key).algorithm)
    c.update(bytes(8))
    return binascii.hexlify(c.finalize()[:5]).decode().upper()


def key_kcv(key, algorithm_id):
    """The KCV shown for a loaded key of a TR-31 algorithm ("T", "A"; other kinds, an
    HMAC or an Ed25519 seed, have no standard check value: the first 8 hex digits of
    the key's SHA-256 stand in, as `handpos qr-key` shows the merchant key)."""
    if algorithm_id == "T":
        return kcv(key, TDES)
    if algorithm_id == "A":
        return kcv(key, AES)
    import hashlib
    return hashlib.sha256(bytes(key)).hexdigest()[:8].upper()


# slot -> what the terminal takes there. "lengths" in bytes.
SLOTS = {
    "dukpt_tdes": {"what": "the TDES DUKPT initial key (IPEK, ANSI X9.24-1)",
                   "usage": "B1", "algorithm": "T", "modes": "X", "export": "NE",
                   "lengths": (16,)},
    "dukpt_aes": {"what": "the AES DUKPT initial key (ANSI X9.24-3)",
                  "usage": "B1", "algorithm": "A", "modes": "X", "export": "NE",
                  "lengths": (16, 24, 32)},
    "data": {"what": "the data key (seals the offline queue, keys the record MACs)",
             "usage": "D0", "algorithm": "A", "modes": "B", "export": "N",
             "lengths": (32,)},
    "export": {"what": "the merchant's queue export key (shared by its terminals)",
               "usage": "D0", "algorithm": "A", "modes": "B", "export": "E",
               "lengths": (32,)},
    "export_sign": {"what": "the merchant's queue export signing seed (Ed25519)",
                    "usage": "S0", "algorithm": "E", "modes": "S", "export": "E",
                    "lengths": (32,)},
    "qr": {"what": "the QR acquirer's merchant key (HMAC-SHA256)",
           "usage": "M7", "algorithm": "H", "modes": "C", "export": "NE",
           "lengths": tuple(range(16, 129))},
}

_NAMES = {
    "usage": {"B0": "a BDK", "B1": "a DUKPT initial key", "D0": "a data encryption key",
              "K0": "a key encryption key", "K1": "a key block protection key",
              "M7": "an HMAC key", "P0": "a PIN encryption key",
              "S0": "a signature key"},
    "algorithm": {"T": "TDES", "A": "AES", "E": "elliptic curve", "H": "HMAC",
                  "D": "single DES", "R": "RSA", "S": "DSA"},
    "modes": {"B": "encrypt and decrypt", "C": "MAC generate and verify", "D": "decrypt only",
              "E": "encrypt only", "G": "generate only", "N": "no restriction",
              "S": "sign only", "V": "verify only", "X": "derive keys"},
    "export": {"E": "exportable", "N": "not exportable", "S": "sensitive"},
}


def _named(kind, value):
    name = _NAMES[kind].get(value)
    return "%s (%s)" % (value, name) if name else value


def version_for(kbpk_algorithm):
    return "D" if kbpk_algorithm == AES else "B"


def header(slot, kbpk_algorithm, blocks=None, exportability=None):
    """A psec Header for a block meant for slot (for the tools that make test blocks,
    and the tests)."""
    spec = SLOTS[slot]
    h = psec.tr31.Header(version_for(kbpk_algorithm), spec["usage"], spec["algorithm"],
                         spec["modes"][0], "00", exportability or spec["export"][0])
    for name, value in (blocks or {}).items():
        h.blocks[name] = value
    return h


def wrap(slot, kbpk, kbpk_algorithm, key, blocks=None, **override):
    """A block of key for slot under kbpk (with KC, the key's check value). override
    sets header fields (usage=, algorithm=, mode_of_use=, exportability=) to make the
    wrong blocks the tests need."""
    h = header(slot, kbpk_algorithm, blocks)
    alg = override.get("algorithm", h.algorithm)
    if alg in ("T", "A") and "KC" not in h.blocks:
        h.blocks["KC"] = ("00" if alg == "T" else "01") + key_kcv(key, alg)
    for field in ("key_usage", "algorithm", "mode_of_use", "exportability"):
        if field in override:
            setattr(h, field, override[field])
    return psec.tr31.KeyBlock(bytes(kbpk), h).wrap(bytes(key))


def _kcv_block(value, key, algorithm_id, kcv_alg):
    """Whether a KC/KP optional block's value matches key; None when it cannot tell."""
    if len(value) < 4 or value[:2] not in ("00", "01"):
        return None
    want = value[2:].upper()
    if value[:2] == "00":
        got = kcv(key, kcv_alg) if kcv_alg == TDES else None
    else:
        got = cmac_kcv(key, kcv_alg)
    if got is None:
        return None
    return got.startswith(want) or want.startswith(got)


def open_block(slot, text, kbpk, kbpk_algorithm):
    """(key bytes, psec header) of a block for slot under kbpk; BlockRefused otherwise."""
    spec = SLOTS[slot]
    kbpk_kcv = kcv(kbpk, kbpk_algorithm)
    if not isinstance(text, str) or not text.strip():
        raise BlockRefused("no key block")
    text = text.strip()
    if not text.isascii() or not text.isprintable():
        raise BlockRefused("not a TR-31 key block (not printable ASCII)")
    kb = psec.tr31.KeyBlock(bytes(kbpk))
    try:
        kb.header.load(text)
    except (psec.tr31.HeaderError, ValueError) as exc:
        raise BlockRefused("not a TR-31 key block: %s" % exc)
    version = kb.header.version_id
    want = version_for(kbpk_algorithm)
    if version in ("A", "C"):
        raise BlockRefused("a version %s block (key variant binding, deprecated by TR-31): "
                           "ask for a version %s block" % (version, want))
    if version != want:
        raise BlockRefused("a version %s block, but the KBPK is %s (KCV %s), which takes "
                           "version %s blocks" % (version, kbpk_algorithm.upper(), kbpk_kcv,
                                                  want))
    kp = kb.header.blocks.get("KP") if "KP" in kb.header.blocks else None
    if kp is not None and _kcv_block(kp, kbpk, None, kbpk_algorithm) is False:
        raise BlockRefused("wrapped under another KBPK (the block names KCV %s; this "
                           "terminal's is %s)" % (kp[2:], kbpk_kcv))
    try:
        key = kb.unwrap(text)
    except (psec.tr31.KeyBlockError, psec.tr31.HeaderError, ValueError) as exc:
        if "MAC" in str(exc) and "hexchar" not in str(exc):
            raise BlockRefused("its MAC does not verify under the KBPK (KCV %s): the block "
                               "was changed or damaged, or wrapped under another KBPK"
                               % kbpk_kcv)
        raise BlockRefused("damaged: %s" % exc)
    h = kb.header
    for field, got, kind in (("usage", h.key_usage, "usage"),
                             ("algorithm", h.algorithm, "algorithm"),
                             ("modes", h.mode_of_use, "modes"),
                             ("export", h.exportability, "export")):
        allowed = spec[field] if field != "usage" and field != "algorithm" else (spec[field],)
        if got not in allowed:
            label = {"usage": "key usage", "algorithm": "algorithm", "modes": "mode of use",
                     "export": "exportability"}[field]
            raise BlockRefused("%s %s is wrong for %s, which takes %s" % (
                label, _named(kind, got), spec["what"],
                " or ".join(_named(kind, a) for a in allowed)))
    if len(key) not in spec["lengths"]:
        lengths = spec["lengths"]
        said = ("%d to %d" % (lengths[0], lengths[-1]) if len(lengths) > 3
                else " or ".join(str(n) for n in lengths))
        raise BlockRefused("holds a key of %d bytes; %s is %s bytes" % (len(key), spec["what"],
                                                                      said))
    if "KC" in h.blocks and h.algorithm in ("T", "A"):
        alg = TDES if h.algorithm == "T" else AES
        if _kcv_block(h.blocks["KC"], key, h.algorithm, alg) is False:
            raise BlockRefused("the key's check value is not the one the block names (KC %s, "
                               "the key's %s)" % (h.blocks["KC"][2:], key_kcv(key, h.algorithm)))
    return key, h


def initial_ksn(h, given=None):
    """The TDES DUKPT initial KSN: the block's optional block KS (20 hex digits), or
    given (the provisioning file's ksn); both must agree. BlockRefused otherwise."""
    return _id_from(h, "KS", given, 20, "initial KSN (optional block KS, or ksn)")


def initial_key_id(h, given=None):
    """The AES DUKPT initial key ID: the block's optional block IK (16 hex digits), or
    given (the provisioning file's initial_key_id)."""
    return _id_from(h, "IK", given, 16, "initial key ID (optional block IK, or initial_key_id)")


def _id_from(h, block, given, digits, what):
    inside = h.blocks[block].upper() if block in h.blocks else None
    given = given.upper() if given else None
    if inside and given and inside != given:
        raise BlockRefused("the block's %s %s differs from the file's %s" % (block, inside, given))
    value = inside or given
    if not value:
        raise BlockRefused("no %s" % what)
    if len(value) != digits or any(c not in "0123456789ABCDEF" for c in value):
        raise BlockRefused("the %s %r is not %d hex digits" % (what, value, digits))
    return value
