"""Moving an offline queue to the replacement terminal (issue 11 item 8): an export is
made for one named terminal, imported there once, within 72 hours; anything else is
refused in one line that says what to do, and nothing is imported. The supervisor
names the target on the keypad; the technician imports with `handpos import-queue`."""
import fcntl
import json
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from board import export as board_export
from drivers.saf_queue import ExportError, KeyFileError, SafQueue
from firmware.core import config as schema
from firmware.flows.offline import target_tid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD, NEW, OTHER = "HP000001", "HP000002", "HP000003"
EXPORT_KEY = b"E" * 32
SEED = b"S" * 32
SIGNER = Ed25519PrivateKey.from_private_bytes(SEED)
VERIFY = SIGNER.public_key()
T0 = 1_780_000_000          # 2026-05-28
HOUR = 3600


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


def _payload(stan):
    pan = "4761739001010119"
    return {"mti": "0220", "de2": pan, "de35": pan + "=31122011143804400000", "de11": stan}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def old(tmp_path, clock):
    q = SafQueue(str(tmp_path / "old.db"), b"O" * 32, tid=OLD, clock=clock)
    q.add("advice", "000001", 1250, "USD", _payload("000001"))
    q.add("reversal", "000002", 800, "USD", _payload("000002"))
    yield q
    q.close()


def _queue(tmp_path, clock, tid=NEW, name="new.db"):
    return SafQueue(str(tmp_path / name), b"N" * 32, tid=tid, clock=clock)


def _export(q, tmp_path, target=NEW, name="saf.json"):
    path = str(tmp_path / name)
    q.export(path, SEED, EXPORT_KEY, target)
    return path


def _signed(path):
    with open(path) as f:
        return json.loads(json.load(f)["signed"])


def _resign(path, doc):
    """What only a holder of the merchant's signing key (or a faulty exporter) can make."""
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    with open(path, "w") as f:
        json.dump({"signed": body, "ed25519": SIGNER.sign(body.encode()).hex()}, f)


# -- the keypad's way of naming the target ---------------------------------------------
def test_the_target_is_typed_as_the_digits_after_the_shared_letters():
    assert target_tid("HP000001", "2") == "HP000002"
    assert target_tid("HP000001", "17") == "HP000017"
    assert target_tid("HP000001", "123456") == "HP123456"
    assert target_tid("HP000001", "1234567") is None          # more than the number holds
    assert target_tid("HP000001", "") is None
    assert target_tid("AB12CD34", "7") == "AB12CD07"
    assert target_tid("HPABCDEF", "2") is None                 # no number to type


# -- the export ---------------------------------------------------------------------------
def test_the_export_names_its_target_id_and_expiry_inside_the_signature(tmp_path, old, clock):
    first, second = _export(old, tmp_path), _export(old, tmp_path, name="again.json")
    doc = _signed(first)
    assert doc["target_tid"] == NEW and doc["tid"] == OLD and doc["version"] == 2
    assert doc["created_utc"] == "2026-05-28T20:26:40Z"
    assert doc["expires_utc"] == "2026-05-31T20:26:40Z"          # 72 h later
    assert len(doc["export_id"]) == 32 and doc["export_id"] != _signed(second)["export_id"]
    # the target is signed: edited, the file is no longer the merchant's
    with open(first) as f:
        outer = json.load(f)
    outer["signed"] = outer["signed"].replace(NEW, OTHER)
    with open(first, "w") as f:
        json.dump(outer, f)
    other = _queue(tmp_path, clock, tid=OTHER)
    with pytest.raises(ExportError, match="not a queue export signed.*nothing was imported"):
        other.import_file(first, VERIFY, EXPORT_KEY)
    assert other.records() == [] and other.imports() == []


def test_the_export_refuses_this_terminal_or_a_malformed_target(tmp_path, old):
    with pytest.raises(ExportError, match="is this terminal"):
        old.export(str(tmp_path / "x.json"), SEED, EXPORT_KEY, OLD)
    with pytest.raises(ExportError, match="not 8 letters or digits"):
        old.export(str(tmp_path / "x.json"), SEED, EXPORT_KEY, "HP-00002")
    assert not os.path.exists(tmp_path / "x.json")


# -- the import's refusals ----------------------------------------------------------------
def test_imported_once_and_remembered_across_a_restart(tmp_path, old, clock):
    path = _export(old, tmp_path)
    new = _queue(tmp_path, clock)
    assert new.import_file(path, VERIFY, EXPORT_KEY) == 2
    [done] = new.imports()
    assert done["export_id"] == _signed(path)["export_id"] and done["source_tid"] == OLD
    new.close()
    new = _queue(tmp_path, clock)                   # the terminal restarted
    with pytest.raises(ExportError) as err:
        new.import_file(path, VERIFY, EXPORT_KEY)
    assert "already imported here" in str(err.value) and "nothing to do" in str(err.value)
    assert "\n" not in str(err.value)
    assert len(new.pending()) == 2 and len(new.imports()) == 1
    new.close()


def test_a_file_for_another_terminal_is_refused(tmp_path, old, clock):
    path = _export(old, tmp_path, target=OTHER)
    new = _queue(tmp_path, clock)
    with pytest.raises(ExportError) as err:
        new.import_file(path, VERIFY, EXPORT_KEY)
    line = str(err.value)
    assert "is for terminal HP000003, and this is HP000002" in line
    assert "import it on HP000003, or export the queue again on HP000001 naming HP000002" in line
    assert new.records() == [] and new.imports() == []


def test_an_expired_file_is_refused_and_one_within_its_time_taken(tmp_path, old, clock):
    path = _export(old, tmp_path)
    new = _queue(tmp_path, clock)
    clock.now = T0 + 72 * HOUR + 1
    with pytest.raises(ExportError, match="expired at 2026-05-31T20:26:40Z.*export the queue "
                                          "again on HP000001"):
        new.import_file(path, VERIFY, EXPORT_KEY)
    assert new.records() == [] and new.imports() == []
    clock.now = T0 + 72 * HOUR
    assert new.import_file(path, VERIFY, EXPORT_KEY) == 2


def test_a_file_made_after_this_terminals_clock_is_refused(tmp_path, old, clock):
    path = _export(old, tmp_path)
    new = _queue(tmp_path, Clock(T0 - 2 * HOUR))       # a clock left behind: expiry unseen
    with pytest.raises(ExportError, match="later than this terminal's clock.*set this "
                                          "terminal's clock"):
        new.import_file(path, VERIFY, EXPORT_KEY)
    assert new.records() == []


def test_a_record_of_another_terminal_than_the_files_is_refused(tmp_path, old, clock):
    path = _export(old, tmp_path)
    doc = _signed(path)
    doc["records"][1]["tid"] = OTHER
    _resign(path, doc)
    new = _queue(tmp_path, clock)
    with pytest.raises(ExportError, match="holds a record of terminal HP000003 .STAN 000001. "
                                          "in an export of HP000001: nothing was imported"):
        new.import_file(path, VERIFY, EXPORT_KEY)
    assert new.records() == [] and new.imports() == []


def test_an_export_of_the_previous_format_is_refused(tmp_path, old, clock):
    path = _export(old, tmp_path)
    doc = _signed(path)
    for key in ("export_id", "target_tid", "expires_utc"):
        del doc[key]
    doc["version"] = 1
    _resign(path, doc)
    new = _queue(tmp_path, clock)
    with pytest.raises(ExportError, match="without a target terminal or expiry"):
        new.import_file(path, VERIFY, EXPORT_KEY)
    assert new.records() == []


def test_a_queue_imported_earlier_goes_on_in_a_file_of_its_own(tmp_path, old, clock):
    """B took A's queue and breaks before uploading it: C gets A's records and B's, each
    in a file whose TID is the records' own."""
    data = tmp_path / "b"
    _key_files(data)
    config = _config(data, NEW)
    b = _queue(tmp_path, clock, tid=NEW, name="b.db")
    assert b.import_file(_export(old, tmp_path), VERIFY, EXPORT_KEY) == 2
    b.add("advice", "000009", 500, "USD", _payload("000009"))
    paths, n = board_export.export_queue(b, config, _System(), OTHER, 72)
    assert n == 3
    assert [os.path.basename(p) for p in paths] == [
        "saf-HP000002-to-HP000003-20260528T202640Z.json",
        "saf-HP000001-to-HP000003-20260528T202640Z.json"]
    c = _queue(tmp_path, clock, tid=OTHER, name="c.db")
    assert [c.import_file(p, VERIFY, EXPORT_KEY) for p in paths] == [1, 2]
    assert sorted((r["tid"], r["stan"]) for r in c.pending()) == [
        (OLD, "000001"), (OLD, "000002"), (NEW, "000009")]


# -- the key files --------------------------------------------------------------------------
class _System:
    def utc_time(self):
        return (2026, 5, 28, 20, 26, 40)

    def clock_synced(self):
        return True


def _key_files(data, mode=0o600):
    keys = data / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    for name, value in (("export.key", EXPORT_KEY), ("export_sign.key", SEED)):
        (keys / name).write_bytes(value)
        os.chmod(keys / name, mode)
    return keys


def _config(data, tid):
    config = schema.defaults()
    config["storage"]["data_dir"] = str(data)
    config["terminal"]["id"] = tid
    return config


@pytest.mark.parametrize("name", ["export.key", "export_sign.key"])
def test_key_files_open_to_others_foreign_or_truncated_are_refused(tmp_path, name):
    keys = _key_files(tmp_path)
    config = _config(tmp_path, OLD)
    assert board_export.export_keys(config) == (EXPORT_KEY, SEED)
    os.chmod(keys / name, 0o640)
    with pytest.raises(KeyFileError, match="other users .mode 640.: chmod 600") as err:
        board_export.export_keys(config)
    assert err.value.screen == "exp_key_mode"
    config["security"]["test_keys"] = True             # a file that is there is checked
    with pytest.raises(KeyFileError, match="chmod 600"):
        board_export.export_keys(config)
    os.chmod(keys / name, 0o600)
    (keys / name).write_bytes(b"x" * 17)
    with pytest.raises(KeyFileError, match="holds 17 bytes, not 32 .truncated"):
        board_export.export_keys(config)
    if os.geteuid() != 0:
        return                                          # only root can give a file away
    (keys / name).write_bytes(b"x" * 32)
    os.chown(keys / name, 65534, -1)
    with pytest.raises(KeyFileError, match="owned by uid 65534, not this user") as err:
        board_export.export_keys(config)
    assert err.value.screen == "exp_key_owner"


def test_no_key_files_outside_test_mode_is_said(tmp_path):
    with pytest.raises(KeyFileError, match="no export.key in"):
        board_export.export_keys(_config(tmp_path, OLD))


# -- the supervisor's screens ---------------------------------------------------------------
def _to_export(h):
    """First run (supervisor 1, PIN 2580), logged in, at Menu 9 > Export's target; by
    keys alone, so that it reads the same in either language."""
    h.boot()
    h.run(3000, until=lambda: h.flow()[0] != "boot")
    h.press("ENTER", "1", "ENTER", *"2580")
    h.press("ENTER", *"2580")
    h.press("ENTER")
    h.press("ENTER")
    h.run(2000, until=lambda: h.flow()[0] == "login")
    h.press("1", "ENTER", *"2580")
    h.press("ENTER")
    assert h.flow() == ("idle", "idle"), h.text()
    h.press("MENU", "9", "3")                # offline queue > export
    h.press(*"2580")
    h.press("ENTER")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_supervisor_names_the_target_and_confirms_it_whole(harness, tmp_path, language):
    h = harness(language=language)
    _to_export(h)
    assert h.flow() == ("queue_export", "target")
    h.press("3")
    assert "HP000003" in h.text()
    h.press("CLEAR", "1", "ENTER")                       # this terminal itself
    assert h.flow() == ("queue_export", "target")
    if language == "en":
        assert "That is this one" in h.text()
    h.press("BKSP", "2", "ENTER")
    assert h.flow() == ("queue_export", "confirm")
    assert h.term.screen.lines[0] == "HP000002"
    if language == "en":
        assert h.term.screen.title == "Export to"
        assert h.term.screen.lines[1:] == ["0 records", "Valid 72 h"]
    folder = tmp_path / "terminal" / "export"
    assert not folder.exists() or os.listdir(folder) == []      # nothing before the yes
    h.press("ENTER")
    assert h.flow() == ("queue_export", "result") and h.term.screen.alert == "ok"
    [name] = os.listdir(folder)
    assert name.startswith("saf-HP000001-to-HP000002-")
    assert _signed(str(folder / name))["target_tid"] == "HP000002"


def test_an_export_key_open_to_others_stops_the_export_in_words(harness, tmp_path):
    h = harness()
    keys = _key_files(tmp_path / "terminal")
    os.chmod(keys / "export_sign.key", 0o644)
    _to_export(h)
    h.press("2", "ENTER", "ENTER")
    assert h.term.screen.alert == "error"
    assert h.term.screen.lines[:2] == ["Export failed", "Key file mode bad"]
    assert not (tmp_path / "terminal" / "export").exists() or \
        os.listdir(tmp_path / "terminal" / "export") == []


# -- the technician's command ---------------------------------------------------------------
@pytest.fixture
def replacement(tmp_path):
    """The replacement terminal's data (its keys, its data key) and configuration."""
    data = tmp_path / "data"
    _key_files(data)
    _device_keys(data, create=True)             # as the terminal's first start makes them
    cfg = tmp_path / "handpos.toml"
    cfg.write_text('[terminal]\nid = "%s"\n[storage]\ndata_dir = "%s"\n' % (NEW, data))
    return data, str(cfg)


def _device_keys(data, create=False):
    """The replacement terminal's key hierarchy, under the simulator board's file root."""
    from drivers.keyroot import open_root
    from drivers.keystore import KeyStore
    root = open_root({"kind": "file", "path": ".sim-root/root.key"}, str(data), create=create)
    return KeyStore(str(data / "keys"), root).open(create=create)


def _cli(cfg, path):
    return subprocess.run([sys.executable, "-m", "tools", "import-queue", path, "--config", cfg,
                           "--board", "sim"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def _pending(data):
    key = _device_keys(data).key("data")
    q = SafQueue(str(data / "saf.db"), key, tid=NEW)
    try:
        return q.pending()
    finally:
        q.close()


def _one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def live_old(tmp_path):
    """The old terminal's queue on the real clock (the command checks expiry by it)."""
    q = SafQueue(str(tmp_path / "live.db"), b"O" * 32, tid=OLD)
    q.add("advice", "000001", 1250, "USD", _payload("000001"))
    q.add("advice", "000003", 700, "USD", _payload("000003"))
    yield q
    q.close()


def test_cli_imports_once_and_refuses_the_replay(replacement, live_old, tmp_path):
    data, cfg = replacement
    path = _export(live_old, tmp_path)
    out = _cli(cfg, path)
    assert out.returncode == 0, out.stderr
    assert "2 records of terminal HP000001 queued on HP000002" in out.stdout
    for name in ("saf.db", "run.lock", "sim.lock"):     # private, like the data folder
        assert os.stat(data / name).st_mode & 0o077 == 0, name
    again = _cli(cfg, path)
    assert again.returncode == 2
    line = _one_line(again.stderr)
    assert line.startswith("handpos import-queue: refused: ") and "already imported" in line
    assert sorted(r["stan"] for r in _pending(data)) == ["000001", "000003"]


def test_cli_refuses_another_targets_file_and_bad_keys(replacement, live_old, tmp_path):
    data, cfg = replacement
    out = _cli(cfg, _export(live_old, tmp_path, target=OTHER))
    assert out.returncode == 2
    assert "is for terminal HP000003, and this is HP000002" in _one_line(out.stderr)
    os.chmod(data / "keys" / "export.key", 0o604)
    out = _cli(cfg, _export(live_old, tmp_path))
    assert out.returncode == 2
    assert "chmod 600 %s" % (data / "keys" / "export.key") in _one_line(out.stderr)
    os.chmod(data / "keys" / "export.key", 0o600)
    (data / "keys" / "export_sign.key").write_bytes(SEED[:20])
    out = _cli(cfg, _export(live_old, tmp_path))
    assert out.returncode == 2 and "holds 20 bytes" in _one_line(out.stderr)
    assert _pending(data) == []


@pytest.mark.parametrize("lock, said", [
    ("run.lock", "the terminal is running on"),
    ("sim.lock", "the simulator is running on")])
def test_cli_refuses_while_the_terminal_runs(replacement, live_old, tmp_path, lock, said):
    data, cfg = replacement
    path = _export(live_old, tmp_path)
    with open(data / lock, "a+") as held:              # what a running terminal holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        out = _cli(cfg, path)
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert said in line and "(pid 4242)" in line and "stop it first" in line
    assert "nothing was imported" in line
    assert not os.path.exists(data / "saf.db") or _pending(data) == []
    assert _cli(cfg, path).returncode == 0               # stopped: the import goes through
    assert len(_pending(data)) == 2


def test_cli_on_a_terminal_that_never_started_says_so(replacement, live_old, tmp_path):
    data, cfg = replacement
    os.unlink(data / "keys" / "keys.wrapped")
    out = _cli(cfg, _export(live_old, tmp_path))
    assert out.returncode == 2
    assert "start the terminal once" in _one_line(out.stderr)
    assert not os.path.exists(data / "saf.db")
