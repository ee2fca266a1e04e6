"""Keys and data at rest (issue 11, items 0-5 and 7): what a thief with the SD card, a
swapped card, a wrong mode or a deleted file meets, checked on the real terminal.

The simulator's key root is a file beside its data folder (board/profiles/sim.toml):
"another device" is the same data folder under another root file.
"""
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys

import pytest

from board.datadir import IN_SERVICE, NEW, private_tree_problems
from drivers.keystore import KeyStoreError, SealedFile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ready(harness, **kw):
    h = harness(**kw)
    h.first_supervisor()
    h.login()
    return h


def _cash_sale(h, digits="1250"):
    h.press(*digits)
    h.press("ENTER", "2", "ENTER", "ENTER", "CANCEL")
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))


def _state(folder):
    with open(os.path.join(folder, "terminal.state")) as f:
        return json.load(f)["state"]


def _modes(folder):
    out = {}
    for base, dirs, files in os.walk(folder):
        for name in [base] + [os.path.join(base, n) for n in files]:
            out[os.path.relpath(name, folder)] = stat.S_IMODE(os.lstat(name).st_mode)
    return out


def test_a_new_terminal_keeps_only_wrapped_keys_in_a_private_folder(harness, tmp_path):
    h = _ready(harness)
    folder = h.term.config["storage"]["data_dir"]
    assert _state(folder) == IN_SERVICE         # the first supervisor made it so
    modes = _modes(folder)
    assert modes["."] == 0o700
    assert all(m == 0o600 for name, m in modes.items() if name != "." and
               not os.path.isdir(os.path.join(folder, name))), modes
    assert not os.path.exists(os.path.join(folder, "keys", "data.key"))
    doc = json.load(open(os.path.join(folder, "keys", "keys.wrapped")))
    assert sorted(doc["keys"]) == ["audit", "data", "dukpt", "pepper", "qr"]
    assert doc["root"] == "file"
    root = tmp_path / ".sim-root" / "root.key"       # outside the data folder
    assert stat.S_IMODE(root.stat().st_mode) == 0o600
    # the operator's PIN is scrypt under the pepper, not the portable PBKDF2
    op = h.term.store.get_operator("1")
    assert op["kdf"] == "scrypt-pepper-v1"
    from firmware.security.auth import hash_pin
    assert op["pin_hash"] != hash_pin("2580", op["salt"], op["iterations"])
    assert h.term.selftests["keys"] == (True, "Keys: file (weak)")
    h.press("MENU", "6")                        # Settings
    h.run(500)
    h.press("5")                                # About: the lab's root named as weaker
    h.run(500)
    for _ in range(3):
        if "Keys: file (weak)" in h.text():
            break
        h.press("DOWN")
    assert "Keys: file (weak)" in h.text(), h.text()


def test_the_data_folder_on_another_device_opens_nothing(harness, tmp_path):
    """The card moved to another terminal (another key root): the keys do not open,
    the terminal says so with its code and offers no first run."""
    h = _ready(harness)
    _cash_sale(h)
    folder = h.term.config["storage"]["data_dir"]
    h.close()
    root = tmp_path / ".sim-root" / "root.key"
    root.write_bytes(os.urandom(32))                    # another device's root
    h = harness()
    h.boot()
    text = h.text()
    assert "Keys: FAIL" in text and "Storage: FAIL" in text, text      # the self-test
    h.press("ENTER")
    h.run(2000, until=lambda: h.flow()[0] == "storage_fault")
    assert h.flow()[0] == "storage_fault"
    text = h.text()
    assert "DAMAGED: Keys" in text and "Call support E-43" in text, text
    h.press("1", "ENTER")                               # no sale, no setup
    assert h.flow()[0] == "storage_fault"
    assert any("does not open under this device's key root" in line for line in h.console)
    db = sqlite3.connect(os.path.join(folder, "journal.db"))    # nothing deleted
    assert db.execute("SELECT COUNT(*) FROM txns").fetchone()[0] == 1
    db.close()


def test_a_deleted_store_is_a_fault_not_a_first_run(harness):
    """Deleting handpos.db used to boot into "create a supervisor": anyone could then
    make themselves supervisor and export the queue."""
    h = _ready(harness)
    _cash_sale(h)
    folder = h.term.config["storage"]["data_dir"]
    h.close()
    for name in os.listdir(folder):
        if name.startswith("handpos.db"):
            os.unlink(os.path.join(folder, name))
    h = harness()
    h.boot()
    h.run(2000, until=lambda: h.flow()[0] == "storage_fault")
    assert h.flow()[0] == "storage_fault", h.text()
    assert "DAMAGED: Store" in h.text() and "E-13" in h.text()
    assert "Welcome" not in h.text()
    h.press("ENTER")
    assert h.flow()[0] == "storage_fault"


def test_power_cut_before_the_first_supervisor_still_offers_the_first_run(harness):
    h = harness()
    h.boot()
    h.wait_for("Welcome")
    folder = h.term.config["storage"]["data_dir"]
    assert _state(folder) == NEW
    h.close()
    h = harness()
    h.boot()
    h.wait_for("Welcome")                               # still a new terminal


def test_a_file_others_may_read_refuses_the_start_with_the_fix(harness, tmp_path):
    h = _ready(harness)
    folder = h.term.config["storage"]["data_dir"]
    h.close()
    os.chmod(os.path.join(folder, "journal.db"), 0o644)
    problems = private_tree_problems(folder)
    assert problems == ["%s is open to other users (mode 644): chmod 600 %s"
                        % (os.path.join(folder, "journal.db"), os.path.join(folder, "journal.db"))]
    config = tmp_path / "t.toml"
    config.write_text('[security]\ntest_keys = true\n[lab]\nenabled = true\n'
                      '[storage]\ndata_dir = "%s"\n' % folder)
    run = subprocess.run([sys.executable, "-m", "tools", "run", "--board", "sim",
                          "--config", str(config)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2
    assert "journal.db is open to other users (mode 644): chmod 600" in run.stderr
    assert "refusing to start" in run.stderr
    os.chmod(folder, 0o755)
    assert "chmod 700 %s" % folder in private_tree_problems(folder)[0]


def test_the_dukpt_state_is_sealed_and_its_loss_is_a_fault(harness, hostsim):
    h = _ready(harness, host=(hostsim.address, hostsim.ca_file))
    h.run(3000, until=lambda: h.term.link_state == "up")
    assert h.swipe_sale("1250")["state"] == "approved"
    key = h.term.payments.dukpt
    folder = h.term.config["storage"]["data_dir"]
    path = os.path.join(folder, "keys", "dukpt.state")
    raw = open(path, "rb").read()
    regs = [r for r in key.state()["registers"] if r]
    assert regs                                             # the future keys are there ...
    for reg in regs:                                        # ... and none of them in clear
        assert bytes.fromhex(reg)[:16] not in raw and reg.encode() not in raw
    assert b"ksn" not in raw and b"registers" not in raw
    counter = key.counter
    h.close()
    h = harness(host=(hostsim.address, hostsim.ca_file))
    h.boot()
    assert h.term.payments.dukpt.counter == counter         # from the sealed file
    h.close()
    os.unlink(path)                                         # a thief, or a bad update
    h = harness(host=(hostsim.address, hostsim.ca_file))
    h.boot()
    assert "PIN key: damaged" in h.text(), h.text()        # the self-test names it
    h.press("ENTER")
    h.run(2000, until=lambda: h.flow()[0] == "storage_fault")
    assert h.flow()[0] == "storage_fault", h.text()
    assert "DAMAGED: PIN key" in h.text() and "E-53" in h.text(), h.text()
    assert any("repeat KSNs" in line for line in h.console)
    assert not os.path.exists(path)                         # never silently reloaded


def test_an_old_release_clear_keys_are_wrapped_and_purged(harness, tmp_path):
    """A data folder of the release before: data.key in clear, the DUKPT registers in
    handpos.db. After one start: the key wrapped and the clear file gone, the registers
    sealed and no trace of them in handpos.db, its free pages or its WAL."""
    h = _ready(harness)
    _cash_sale(h, "990")
    folder = h.term.config["storage"]["data_dir"]
    h.close()
    # make it look like the old release: clear data key, clear DUKPT state in the store
    from drivers.keystore import KeyStore
    from drivers.keyroot import open_root
    root = open_root({"kind": "file", "path": ".sim-root/root.key"}, folder)
    ks = KeyStore(os.path.join(folder, "keys"), root).open()
    data_key = ks.key("data")
    state = ks.sealed("dukpt.state", "dukpt", "dukpt state").read()
    fd = os.open(os.path.join(folder, "keys", "data.key"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, data_key)
    os.close(fd)
    for name in ("keys.wrapped", "dukpt.state"):
        os.unlink(os.path.join(folder, "keys", name))
    os.unlink(os.path.join(folder, "terminal.state"))
    db = sqlite3.connect(os.path.join(folder, "handpos.db"))
    db.execute("INSERT INTO settings VALUES ('dukpt.state', ?)", (state.decode(),))
    db.execute("DELETE FROM settings WHERE key='dukpt.loaded'")
    from firmware.security.auth import hash_pin         # its PINs: PBKDF2, no pepper
    db.execute("UPDATE operators SET kdf='pbkdf2-sha256', iterations=50, salt=?, pin_hash=?",
               (b"s" * 16, hash_pin("2580", b"s" * 16, 50)))
    db.commit()
    db.close()
    needle = json.loads(state)["ksn"].encode()
    h = harness()
    h.boot()
    h.login()
    assert h.flow() == ("idle", "idle"), h.text()
    assert len(h.term.payments.journal.find()) == 1         # the journal's MACs still hold
    assert not os.path.exists(os.path.join(folder, "keys", "data.key"))
    assert os.path.exists(os.path.join(folder, "keys", "keys.wrapped"))
    h.close()
    for name in os.listdir(folder):
        if name.startswith("handpos.db"):
            assert needle not in open(os.path.join(folder, name), "rb").read(), name
    assert any("moved from handpos.db" in line for line in h.console)


def test_pins_are_peppered_and_an_old_pbkdf2_pin_is_upgraded_at_login(harness):
    h = _ready(harness)
    store = h.term.store
    # an operator from an older release: PBKDF2, no pepper
    from firmware.security.auth import hash_pin
    salt = b"s" * 16
    store.add_operator({"id": "7", "name": "Old", "role": "cashier", "salt": salt,
                        "pin_hash": hash_pin("4826", salt, 50), "iterations": 50,
                        "kdf": "pbkdf2-sha256"})
    h.press("MENU", "8")                                   # log out
    h.login("7", "4826")
    assert h.flow() == ("idle", "idle"), h.text()
    op = store.get_operator("7")
    assert op["kdf"] == "scrypt-pepper-v1" and op["salt"] != salt
    # the stored hash is of no use without the pepper: a copy of the database alone
    # cannot tell the right PIN from a wrong one
    from drivers.pinhash import ScryptPepper
    guess = ScryptPepper(b"\0" * 32, cost=op["iterations"])
    assert guess.hash(b"4826", op["salt"], op["iterations"]) != op["pin_hash"]
    right = ScryptPepper(h.sim.built.datadir.keys.key("pepper"), cost=op["iterations"])
    assert right.hash(b"4826", op["salt"], op["iterations"]) == op["pin_hash"]
    h.press("MENU", "8")
    h.login("7", "1111")
    assert "Wrong PIN" in h.text() or h.flow()[0] == "login"
    assert h.term.operator is None


def test_truncated_and_garbage_key_files_are_named(tmp_path):
    from drivers.keyroot import open_root
    from drivers.keystore import KeyStore
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    root = open_root({"kind": "file", "path": ".sim-root/root.key"}, str(data), create=True)
    ks = KeyStore(str(data / "keys"), root).open(create=True)
    path = data / "keys" / "keys.wrapped"
    good = path.read_bytes()
    path.write_bytes(good[:40])
    with pytest.raises(KeyStoreError) as err:
        KeyStore(str(data / "keys"), root).open()
    assert "is damaged (not a key file): restore the key folder" in str(err.value)
    path.write_bytes(good)
    os.chmod(path, 0o640)
    with pytest.raises(KeyStoreError) as err:
        KeyStore(str(data / "keys"), root).open()
    assert "chmod 600" in str(err.value)
    os.chmod(path, 0o600)
    os.unlink(path)
    with pytest.raises(KeyStoreError) as err:       # never new keys over a terminal's data
        KeyStore(str(data / "keys"), root).open(create=False)
    assert "missing but it has data" in str(err.value)
    sealed = ks.sealed("x.state", "dukpt", "dukpt state")
    sealed.write(b"secret")
    other = SealedFile(sealed.path, ks.key("dukpt"), "another purpose")
    with pytest.raises(KeyStoreError):                  # a file sealed for one use only
        other.read()
    assert sealed.read() == b"secret"


def test_a_full_card_during_a_key_update_keeps_the_old_file(tmp_path):
    from tests.conftest import SmallDisk
    disk = SmallDisk(tmp_path / "data", size="64k")
    try:
        sealed = SealedFile(str(tmp_path / "data" / "dukpt.state"), os.urandom(32), "dukpt state")
        sealed.write(b"counter 1")
        disk.fill()
        with pytest.raises(KeyStoreError) as err:
            sealed.write(b"counter 2" * 2000)
        assert err.value.kind == "full" and "SD card is full" in str(err.value)
        assert sealed.read() == b"counter 1"            # whole, the old one
        assert [n for n in os.listdir(disk.path) if n.endswith(".tmp")] == []
        disk.free()
        sealed.write(b"counter 2")
        assert sealed.read() == b"counter 2"
    finally:
        disk.umount()


def test_the_systemd_unit_keeps_the_data_private():
    unit = open(os.path.join(ROOT, "board", "handpos.service")).read()
    assert "UMask=0077" in unit and "StateDirectoryMode=0700" in unit


def test_pin_hash_cost_is_the_one_asked(tmp_path):
    from drivers.pinhash import ScryptPepper
    a = ScryptPepper(b"p" * 32, cost=1 << 10)
    assert a.hash(b"1234", b"s" * 16, 1 << 10) == hashlib.scrypt(
        __import__("hmac").new(b"p" * 32, b"1234", hashlib.sha256).digest(),
        salt=b"s" * 16, n=1 << 10, r=8, p=1, dklen=32)
    with pytest.raises(ValueError):
        ScryptPepper(b"p" * 32, cost=1000)
    shutil.rmtree(str(tmp_path), ignore_errors=True)


def test_a_lost_state_file_is_settled_by_the_store(harness):
    """terminal.state gone (or from an older release): a store with a supervisor makes
    it "in service" again, so deleting the store as well is still a fault."""
    h = _ready(harness)
    _cash_sale(h)
    folder = h.term.config["storage"]["data_dir"]
    h.close()
    os.unlink(os.path.join(folder, "terminal.state"))
    h = harness()
    h.boot()
    h.login()
    assert h.flow() == ("idle", "idle"), h.text()
    assert _state(folder) == IN_SERVICE
    h.close()
    os.unlink(os.path.join(folder, "terminal.state"))
    for name in os.listdir(folder):
        if name.startswith("handpos.db"):
            os.unlink(os.path.join(folder, name))
    h = harness()                       # no state, no operators, but a journal: no first run
    h.boot()
    h.run(2000, until=lambda: h.flow()[0] == "storage_fault")
    assert h.flow()[0] == "storage_fault", h.text()


def test_the_simulator_makes_its_own_old_data_folder_private(tmp_path):
    from board.datadir import make_private
    old = tmp_path / ".sim"
    (old / "keys").mkdir(parents=True)
    (old / "handpos.db").write_bytes(b"x")
    os.chmod(old, 0o755)
    os.chmod(old / "keys", 0o755)
    os.chmod(old / "handpos.db", 0o644)
    assert private_tree_problems(str(old))
    assert make_private(str(old)) == 3
    assert private_tree_problems(str(old)) == []
    assert stat.S_IMODE(os.stat(old / "handpos.db").st_mode) == 0o600
