"""`handpos backup create|restore` on real data folders (made by the real terminal):
the backup brings back the journal, the queue, the store, the keys as wrapped at rest
and the configuration; a backup from another terminal, from another device, damaged or
cut short is refused with one line and nothing is written (docs/updates.md, "The
backup file")."""
import hashlib
import os
import shutil
import subprocess

import pytest

from tests.test_update_support import PY, ROOT, cli, data_key, env, make_terminal, \
    run_lock_held, write_config


def backup(config, *more):
    return cli("backup", "create", "--config", config, "--board", "sim", *more)


def restore(config, path):
    return cli("backup", "restore", str(path), "--config", config, "--board", "sim")


def made(got):
    assert got.returncode == 0, got.stderr
    return got.stdout.split(" written")[0].split("handpos backup: ")[1]


def one_refusal(got):
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert got.returncode == 2 and len(lines) == 1, got.stderr
    assert lines[0].startswith("handpos backup: refused: ")
    assert lines[0].endswith("nothing was restored")
    return lines[0]


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    base = tmp_path_factory.mktemp("t1")
    return base, make_terminal(base)


def _add_queue_record(base):
    from drivers.saf_queue import SafQueue
    q = SafQueue(os.path.join(str(base), "data", "saf.db"), data_key(base), tid="HP000001")
    q.add("advice", "000777", 4200, "USD", {"pan": "4111"})
    q.close()


def test_a_backup_brings_the_data_back(term, tmp_path):
    base, config = term
    data = os.path.join(str(base), "data")
    _add_queue_record(base)
    path = made(backup(config, "--output-dir", str(tmp_path)))
    assert os.stat(path).st_mode & 0o077 == 0
    keys_before = dict((n, digest(os.path.join(data, "keys", n)))
                       for n in os.listdir(os.path.join(data, "keys")))
    # the SD card loses the journal, the queue and the keys; the config is edited
    for name in ("journal.db", "saf.db", "handpos.db"):
        os.unlink(os.path.join(data, name))
    shutil.rmtree(os.path.join(data, "keys"))
    os.makedirs(os.path.join(data, "keys"), mode=0o700)
    with open(config, "a") as f:
        f.write("# edited after the backup\n")
    got = restore(config, path)
    assert got.returncode == 0, got.stderr
    assert "restored into" in got.stdout
    assert dict((n, digest(os.path.join(data, "keys", n)))
                for n in os.listdir(os.path.join(data, "keys"))) == keys_before
    assert "edited after" not in open(config).read()
    from drivers.saf_queue import SafQueue
    q = SafQueue(os.path.join(data, "saf.db"), data_key(base), tid="HP000001")
    assert [r["stan"] for r in q.pending()] == ["000777"]
    q.close()
    assert os.path.exists(os.path.join(data, "terminal.state"))     # in service, no first run


def test_a_backup_of_another_terminal_is_refused(term, tmp_path):
    base, config = term
    path = made(backup(config, "--output-dir", str(tmp_path)))
    other = write_config(tmp_path, tid="HP000002",
                         release_root=str(tmp_path / "root"))
    # the same data folder, named as another terminal by its configuration
    with open(other) as f:
        text = f.read().replace(str(tmp_path / "data"), os.path.join(str(base), "data"))
    with open(other, "w") as f:
        f.write(text)
    line = one_refusal(restore(other, path))
    assert "this backup is from terminal HP000001, and this is HP000002" in line


def test_a_backup_made_on_another_device_is_refused(term, tmp_path_factory):
    base, config = term
    base2 = tmp_path_factory.mktemp("t2")
    config2 = make_terminal(base2)          # same TID, its own key root
    path = made(backup(config2))
    before = digest(os.path.join(str(base), "data", "journal.db"))
    line = one_refusal(restore(config, path))
    assert "keys do not open with this terminal's key root" in line
    assert digest(os.path.join(str(base), "data", "journal.db")) == before


@pytest.mark.parametrize("how", ["flip", "cut"])
def test_a_damaged_backup_is_refused(term, tmp_path, how):
    base, config = term
    path = made(backup(config, "--output-dir", str(tmp_path)))
    data = bytearray(open(path, "rb").read())
    if how == "flip":
        at = data.find(b"SQLite format 3") + 5000      # inside the first database
        data[at] ^= 0x01
    else:
        data = data[:len(data) // 2]
    with open(path, "wb") as f:
        f.write(bytes(data))
    before = digest(os.path.join(str(base), "data", "journal.db"))
    line = one_refusal(restore(config, path))
    assert "damaged backup" in line
    assert digest(os.path.join(str(base), "data", "journal.db")) == before


def test_restore_refused_while_the_terminal_runs(term, tmp_path):
    base, config = term
    path = made(backup(config, "--output-dir", str(tmp_path)))
    proc = subprocess.Popen([PY, "-m", "tools", "run", "--board", "sim", "--config", config],
                            cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        import time
        deadline = time.monotonic() + 30
        while not run_lock_held(os.path.join(str(base), "data")) and time.monotonic() < deadline:
            time.sleep(0.1)
        line = one_refusal(restore(config, path))
        assert "the terminal is running" in line
    finally:
        proc.kill()
        proc.wait(10)
