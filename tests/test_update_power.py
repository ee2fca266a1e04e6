"""A power cut in the middle of an update (docs/updates.md, "Power cuts"): the apply
process is SIGKILLed at each of its steps (a real process, a real release root in a
temp folder), then the stable launcher (deploy/handpos-launch, run as systemd would)
decides what runs: the old release until the switch, the new one on trial after it,
and the old one again once the new one has used up its starts without being marked good.
Nothing half-written is ever run, and the next apply goes through."""
import os
import subprocess

import pytest

from drivers import updater
from tests.test_update_support import LAUNCHER, PY, cli, env, make_terminal
from tools import release

STEPS = ("verified", "stopped", "backed_up", "installing", "installed", "marked", "switched")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    out = {}
    for v in ("0.2.0", "0.3.0"):
        out[v] = str(d / ("%s.hpup" % v))
        release.build(out[v], v)
    return out


@pytest.fixture(scope="module")
def terminal(tmp_path_factory):
    base = tmp_path_factory.mktemp("term")
    return base, make_terminal(base)


def decide(root):
    got = subprocess.run([PY, LAUNCHER, "--root", root, "--decide-only"], env=env(),
                         capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    return got.stdout.strip()


def installed_good(tmp_path, terminal, bundles):
    """A release root whose slot a runs 0.2.0, marked good; (root path, config)."""
    base, config = terminal
    root = str(tmp_path / "root")
    got = cli("update", "apply", bundles["0.2.0"], "--config", config, "--board", "sim",
              "--root", root)
    assert got.returncode == 0, got.stderr
    updater.ReleaseRoot(root).confirm("a")
    return root, config


@pytest.mark.parametrize("step", STEPS)
def test_a_power_cut_at_each_step_leaves_a_release_that_runs(tmp_path, terminal, bundles, step):
    root, config = installed_good(tmp_path, terminal, bundles)
    rr = updater.ReleaseRoot(root)
    before = rr.marks()
    got = cli("update", "apply", bundles["0.3.0"], "--config", config, "--board", "sim",
              "--root", root, extra_env={"HANDPOS_UPDATE_CRASH_AT": step})
    assert got.returncode == -9, (got.returncode, got.stderr)
    assert release.check_installed(rr.slot_dir("a")) == []      # the old one untouched
    slot = decide(root)
    log = [line["event"] for line in rr.log_lines()]
    if step == "switched":
        # the switch happened: the new release runs on trial, its start counted
        assert slot == "b" and rr.current_slot() == "b"
        assert rr.marks()["pending"]["boots"] == 1 and log[-1] == "trial_boot"
        assert release.check_installed(rr.slot_dir("b")) == []
        # it never gets marked good (no health check passes: nothing runs it here):
        # after boots_max starts the launcher goes back to the old release
        assert decide(root) == "b"
        assert decide(root) == "a" and rr.current_slot() == "a"
        marks = rr.marks()
        assert marks["pending"] is None and marks["good"] == "a"
        assert "started 2 times" in marks["bad"]["b"]
        assert rr.log_lines()[-1]["event"] == "rolled_back"
    else:
        assert slot == "a" and rr.current_slot() == "a"
        marks = rr.marks()
        assert not marks.get("pending") and marks["good"] == "a"
        assert marks["min_version"] == before["min_version"] == "0.2.0"
        if step == "marked":
            assert log[-1] == "update_abandoned"
    # and the update goes through afterwards, from whatever the cut left
    got = cli("update", "apply", bundles["0.3.0"], "--config", config, "--board", "sim",
              "--root", root)
    assert got.returncode == 0, got.stderr
    assert rr.current_slot() == "b" and rr.version_of("b") == "0.3.0"
    assert release.check_installed(rr.slot_dir("b")) == []
    assert os.listdir(os.path.join(root, "incoming")) == []


def test_a_current_link_to_nothing_goes_back_to_the_good_release(tmp_path, terminal, bundles):
    root, _ = installed_good(tmp_path, terminal, bundles)
    os.unlink(os.path.join(root, "current"))
    os.symlink("releases/zz", os.path.join(root, "current"))
    assert decide(root) == "a"
    assert os.readlink(os.path.join(root, "current")) == "releases/a"


def test_damaged_marks_do_not_stop_the_old_release(tmp_path, terminal, bundles):
    root, _ = installed_good(tmp_path, terminal, bundles)
    with open(os.path.join(root, "marks.json"), "w") as f:
        f.write('{"pending": {"slot"')          # cut mid-write by hand (never by us)
    assert decide(root) == "a"
