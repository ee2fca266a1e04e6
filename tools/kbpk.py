"""The key block protection key (KBPK) and its ceremony: `handpos keys kbpk load|status`.

Every key the terminal takes at provisioning arrives as a TR-31 key block wrapped under
the KBPK (tools/tr31.py). The KBPK itself never travels whole: two or three key
custodians each hold a component, and the key is their XOR, so no one person ever knew
it (dual control, split knowledge: docs/key-ceremony.md). Each component is typed on
this machine's terminal without echo, or read from a file, and its check value (KCV)
shown for its custodian to compare with their sheet; then the KCV of the combined key
for the key's owner (the acquirer) to compare with theirs.

At rest the KBPK is sealed (AES-256-GCM, drivers/keystore.py SealedFile) in
DATA/keys/kbpk.sealed under a key of its own derived from the device's key root
(root.kek("handpos kbpk v1")), like the terminal's other keys: an SD card copied into
another device opens nothing. Components are never written anywhere; what is written
into the audit trail is the KCVs and the custodians' names.
"""
import binascii
import json
import os
import time

from tools import tr31

FILE = "kbpk.sealed"
PURPOSE = "kbpk"
KEK_LABEL = b"handpos kbpk v1"
LENGTHS = {tr31.AES: (16, 24, 32), tr31.TDES: (16, 24)}
COMPONENT_INPUT_MAX = 512


class CeremonyRefused(Exception):
    """The ceremony stops; str() is the one line to show. Nothing was sealed."""


def sealed(keys):
    from drivers.keystore import SealedFile
    return SealedFile(os.path.join(keys.folder, FILE), keys.root.kek(KEK_LABEL), PURPOSE)


def read(keys):
    """{"algorithm", "key" (bytes), "kcv", "loaded_utc", "custodians"} or None when no
    KBPK was loaded. KeyStoreError when the file does not open."""
    from drivers.keystore import KeyStoreError, SealedMissing
    from firmware.core.store import CORRUPT
    try:
        raw = sealed(keys).read()
    except SealedMissing:
        return None
    try:
        doc = json.loads(raw.decode())
        key = binascii.unhexlify(doc["key"])
        if doc["algorithm"] not in LENGTHS or len(key) not in LENGTHS[doc["algorithm"]]:
            raise ValueError("algorithm")
    except (ValueError, KeyError, TypeError, UnicodeError):
        raise KeyStoreError(CORRUPT, "%s opens but holds no KBPK: hold the key ceremony "
                            "again (handpos keys kbpk load)" % sealed(keys).path)
    doc["key"] = key
    return doc


def write(keys, algorithm, key, custodians):
    doc = {"algorithm": algorithm, "key": binascii.hexlify(bytes(key)).decode(),
           "kcv": tr31.kcv(key, algorithm), "custodians": list(custodians),
           "loaded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    sealed(keys).write(json.dumps(doc, sort_keys=True).encode())
    return doc


def parse_component(text, algorithm, number):
    """The bytes of one component typed or read as hex (spaces and dashes between
    groups allowed, as component sheets print them); CeremonyRefused saying why."""
    clean = "".join(text.replace("-", " ").split()).upper()
    if not clean:
        raise CeremonyRefused("component %d is empty" % number)
    if any(c not in "0123456789ABCDEF" for c in clean):
        raise CeremonyRefused("component %d is not hex digits (0-9, A-F)" % number)
    lengths = LENGTHS[algorithm]
    if len(clean) % 2 or len(clean) // 2 not in lengths:
        raise CeremonyRefused("component %d is %d hex digits; an %s KBPK component is %s"
                              % (number, len(clean), algorithm.upper(),
                                 " or ".join(str(2 * n) for n in lengths)))
    value = binascii.unhexlify(clean)
    if not value.strip(b"\0"):
        raise CeremonyRefused("component %d is all zeros: not a component" % number)
    return value


def combine(components, algorithm):
    """The KBPK: the XOR of the components (CeremonyRefused for components of different
    lengths, two alike, or a result that is no key)."""
    if len(set(len(c) for c in components)) != 1:
        raise CeremonyRefused("the components are of different lengths (%s bytes): each "
                              "custodian's component is as long as the key"
                              % ", ".join(str(len(c)) for c in components))
    if len(set(components)) != len(components):
        raise CeremonyRefused("two components are the same: each custodian holds their own")
    key = bytearray(len(components[0]))
    for comp in components:
        for i, b in enumerate(comp):
            key[i] ^= b
    if not bytes(key).strip(b"\0"):
        raise CeremonyRefused("the components XOR to zero: not a key")
    if algorithm == tr31.TDES and key[:8] == key[8:16]:
        raise CeremonyRefused("the combined TDES key has two equal halves (single DES): not "
                              "a key")
    return bytes(key)


def _read_file(path, number):
    try:
        with open(path, "rb") as f:
            raw = f.read(COMPONENT_INPUT_MAX + 1)
    except FileNotFoundError:
        raise CeremonyRefused("no component file %s" % path)
    except OSError as exc:
        raise CeremonyRefused("component file %s cannot be read (%s)" % (path, exc.strerror))
    if len(raw) > COMPONENT_INPUT_MAX:
        raise CeremonyRefused("component file %s is too long to be a component" % path)
    try:
        text = raw.decode("ascii")
    except UnicodeError:
        raise CeremonyRefused("component file %s is not text" % path)
    lines = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if len(lines) != 1:
        raise CeremonyRefused("component file %s holds %d lines: the component alone on one "
                              "line" % (path, len(lines)))
    return lines[0]


def _ask(prompt, tty):
    import getpass
    try:
        return getpass.getpass(prompt, stream=tty)
    except (EOFError, KeyboardInterrupt):
        raise CeremonyRefused("the ceremony was stopped at the prompt")


def gather(count, algorithm, files, custodians, out, tty_path="/dev/tty"):
    """Each custodian's component, from files[i] or typed (not shown) on the terminal;
    its KCV shown as it is taken. Returns the components."""
    components = []
    for i in range(count):
        number = i + 1
        who = custodians[i] if i < len(custodians) else "custodian %d" % number
        if i < len(files) and files[i]:
            text = _read_file(files[i], number)
            source = "file %s" % files[i]
        else:
            try:
                tty = open(tty_path, "w+")
            except OSError:
                raise CeremonyRefused("no terminal to type component %d on: give --component-"
                                      "file for each custodian, or run it at a terminal"
                                      % number)
            with tty:
                text = _ask("component %d of %d (%s), hex, not shown: " % (number, count, who),
                            tty)
            source = "typed"
        comp = parse_component(text, algorithm, number)
        components.append(comp)
        out("component %d of %d (%s, %s): KCV %s: %s compares it with the component sheet"
            % (number, count, who, source, tr31.kcv(comp, algorithm), who))
    return components


# -- the command ------------------------------------------------------------------------
