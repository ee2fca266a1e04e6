"""Settings > Update on the terminal (issue 17, docs/updates.md "On the terminal"): the
bundles on a USB folder (real ones, made by tools/release.py) listed with their
manifests' versions, the refusals on the spot, and `handpos update apply` run as a real
child process whose [n/8] lines reach the panel, in English and Chinese."""
import os

import pytest

from drivers import update_runner, updater
from tests.test_network import TECH, open_entry, technician
from tools import release

NO_UPDATE_MFA = ["pin_reset", "key_load", "factory_reset"]


@pytest.fixture(scope="module")
def usb(tmp_path_factory):
    d = tmp_path_factory.mktemp("usb")
    for v in ("9.0.0", "9.1.0"):
        release.build(str(d / ("handpos-%s.hpup" % v)), v)
    (d / "junk.hpup").write_bytes(b"not a tar file at all" * 40)
    (d / "notes.txt").write_text("not a bundle")
    return str(d)


def write_config(base, data, root, actions):
    """The configuration the child apply reads (HANDPOS_CONFIG): the harness's data
    folder, a temporary release root, no stop or start command (the simulator's)."""
    path = os.path.join(str(base), "update-test.toml")
    with open(path, "w") as f:
        f.write('[storage]\ndata_dir = "%s"\n[lab]\nenabled = true\n[security]\n'
                'test_keys = true\n[update]\nrelease_root = "%s"\nstop_command = ""\n'
                'start_command = ""\n[mfa]\nactions = %s\n'
                % (data, root, "[%s]" % ", ".join('"%s"' % a for a in actions)))
    return path


def field(harness, tmp_path, usb, language="en", actions=NO_UPDATE_MFA):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    h = technician(harness, language=language)
    root = str(tmp_path / "root")
    h.term.config["update"].update(usb_path=usb, release_root=root, stop_command="",
                                   start_command="")
    h.term.config["mfa"]["actions"] = list(actions)
    h.term.updates.env["HANDPOS_CONFIG"] = write_config(
        tmp_path, h.term.config["storage"]["data_dir"], root, actions)
    return h, root


def to_update(h):
    h.press("MENU")
    open_entry(h, "settings")
    open_entry(h, "update")
    assert h.flow()[0] == "update", h.text()


def screens_while(h, until, ms=180000):
    """Every screen drawn until until() holds (the loop run as the terminal runs it)."""
    seen = []
    old = h.term.on_screen

    def record(screen):
        seen.append(screen.text())
        if old is not None:
            old(screen)
    h.term.on_screen = record
    try:
        assert h.run(ms, until=until, limit=10 ** 6), h.text()
    finally:
        h.term.on_screen = old
    return seen


def test_the_entry_is_the_technicians_alone(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    h.press("MENU")
    open_entry(h, "settings")
    assert "update" not in [e[1] for e in h.term.current().entries()]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_lists_the_bundles_and_relays_apply_step_by_step(harness, tmp_path, usb, language):
    h, root = field(harness, tmp_path, usb, language)
    to_update(h)
    f = h.term.current()
    assert [b["version"] for b in f.found] == ["9.1.0", "9.0.0", ""]
    assert f.found[2]["error"] == "damaged or cut short"
    text = h.text()
    assert "9.1.0" in text and "9.0.0" in text, text
    assert ("Damaged bundle" if language == "en" else "损坏的升级包") in text, text
    h.press("ENTER")                                    # the newest
    assert h.flow() == ("update", "confirm")
    assert ("Install 9.1.0?" if language == "en" else "安装 9.1.0？") in h.text()
    h.press("ENTER")
    assert h.flow() == ("update", "running")
    seen = screens_while(h, lambda: h.flow() == ("update", "ended"))
    # a real child process ran apply, and each of its steps reached the panel in words
    runner = h.term.updates
    assert runner.log and runner.log[0][1:5] == ["-m", "tools", "update", "apply"]
    words = {"en": ("1/8 Check bundle", "3/8 Stop terminal", "4/8 Back up data",
                    "8/8 Start terminal"),
             "zh": ("1/8 校验升级包", "3/8 停止终端", "4/8 备份数据", "8/8 启动终端")}[language]
    for w in words:
        assert any(w in s for s in seen), (w, seen)
    f = h.term.current()
    assert f.lines[0].startswith("handpos update: [1/8] verify:"), f.lines
    end = h.text()
    if language == "en":
        assert "Installed 9.1.0" in end and "Restart to finish" in end, end
    else:
        assert "已安装 9.1.0" in end and "重启终端以完成" in end, end
    assert h.term.screen.alert == "ok"
    rr = updater.ReleaseRoot(root)
    assert rr.current_slot() == "a" and rr.version_of("a") == "9.1.0"
    backups = os.listdir(os.path.join(h.term.config["storage"]["data_dir"], "backups"))
    assert len(backups) == 1 and backups[0].endswith(".hpbak")
    events = [r[1] for r in h.term.store.audit_log(20)]
    assert "update_started" in events and "update_ended" in events
    h.press("ENTER")
    assert h.flow()[0] == "settings"


def test_apply_refusal_is_shown_in_words(harness, tmp_path, usb):
    """The same version again is refused by apply itself (its step 1): the panel says
    why in words, nothing installed."""
    h, root = field(harness, tmp_path, usb)
    rr = updater.ReleaseRoot(root)
    to_update(h)
    h.press("DOWN", "ENTER", "ENTER")                   # 9.0.0
    h.run(120000, until=lambda: h.flow() == ("update", "ended"), limit=10 ** 6)
    assert "Installed 9.0.0" in h.text()
    rr.confirm(rr.current_slot())                      # marked good: the floor is 9.0.0
    h.press("ENTER")
    open_entry(h, "update")
    h.press("DOWN", "ENTER", "ENTER")                   # 9.0.0 again: already runs
    h.run(120000, until=lambda: h.flow() == ("update", "ended"), limit=10 ** 6)
    text = h.text()
    assert "Update failed:" in text and "Already installed" in text, text
    assert h.term.screen.alert == "error"
    assert "already runs" in h.term.current().refusal


def test_refused_on_the_spot_with_a_shift_open_or_a_bad_bundle(harness, tmp_path, usb):
    h, root = field(harness, tmp_path, usb, "zh")
    pay = h.term.payments
    pay.journal.shift_open(TECH[0], 0, "2026-01-01T00:00:00Z", 0, pay.batch(), "USD")
    to_update(h)
    h.press("ENTER")
    assert h.flow() == ("update", "refused") and h.term.screen.alert == "error"
    assert h.term.current().rows[:2] == ["现在不能升级：", "班次未关闭"]
    assert h.term.updates.log == [] and not os.path.exists(root)
    audit = [r for r in h.term.store.audit_log(10) if r[1] == "update_refused"]
    assert audit and "shift 1" in audit[0][3]
    h.press("ENTER")
    open_entry(h, "update")
    h.press("DOWN", "DOWN", "ENTER")                    # the junk file
    assert h.term.current().rows[0] == "升级包已损坏："
    assert h.term.updates.log == []


def test_no_bundle_on_the_stick(harness, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    h, root = field(harness, tmp_path, str(empty))
    to_update(h)
    assert h.flow() == ("update", "empty")
    assert "No update on USB" in h.text()


def test_the_technicians_code_is_asked_and_apply_takes_the_terminals_grant(
        harness, tmp_path, usb):
    from tests.test_mfa import enrol
    import time
    h, root = field(harness, tmp_path, usb, actions=["update"])
    then = int(time.time()) - 600
    h.term.mfa.now = lambda: then
    phone, _ = enrol(h, h.term.operator, then)
    h.term.mfa.now = time.time
    while h.flow()[0] == "asker":                       # test_mfa's host of the enrolment
        h.term.current().finish(None)
        h.run(100)
    to_update(h)
    h.press("ENTER", "ENTER")
    assert h.flow() == ("mfa_check", "code"), h.text()
    h.press(*phone.code(time.time()), "ENTER")
    assert h.flow() == ("update", "running"), h.text()
    assert h.term.updates.log[0][-1] == "--grant-stdin"
    h.run(180000, until=lambda: h.flow() == ("update", "ended"), limit=10 ** 6)
    assert "Installed 9.1.0" in h.text(), (h.text(), h.term.current().lines)


def test_a_grant_for_another_bundle_or_too_old_is_refused(tmp_path):
    key = update_runner.grant_key(b"k" * 32)
    mac = update_runner.grant_mac(key, "/media/usb/a.hpup", "9", 1000)
    assert mac != update_runner.grant_mac(key, "/media/usb/b.hpup", "9", 1000)
    assert mac != update_runner.grant_mac(key, "/media/usb/a.hpup", "8", 1000)
    assert mac != update_runner.grant_mac(update_runner.grant_key(b"j" * 32),
                                          "/media/usb/a.hpup", "9", 1000)


def test_the_device_runs_apply_as_a_unit_of_its_own():
    argv = update_runner.systemd_argv("/opt/handpos/venv/bin/python", "/etc/handpos/handpos.toml",
                                      "pizero2w", release_dir="/opt/handpos/releases/a",
                                      uid=999)("/media/usb/x.hpup")
    assert argv[:6] == ["systemd-run", "--unit", "handpos-update", "--collect", "--pipe",
                        "--quiet"]
    assert argv[argv.index("--uid") + 1] == "999"
    i = argv.index("/opt/handpos/venv/bin/python")
    assert argv[i:i + 6] == ["/opt/handpos/venv/bin/python", "-m", "tools", "update", "apply",
                             "/media/usb/x.hpup"]


def test_beside_the_simulator_that_started_it_and_no_other(harness, tmp_path, usb):
    """The simulator holds its data folder's sim.lock: apply started from its Update
    entry (its pid in HANDPOS_UPDATE_BESIDE_SIM, apply's parent) goes on beside it; any
    other apply is refused at step 3, as beside a running terminal."""
    from tools import cli
    h, root = field(harness, tmp_path, usb)
    lock, _ = cli.lock_data_dir(h.term.config["storage"]["data_dir"], cli.SIM_LOCK)
    try:
        h.term.updates.env["HANDPOS_UPDATE_BESIDE_SIM"] = "1"       # not this simulator
        to_update(h)
        h.press("ENTER", "ENTER")
        h.run(120000, until=lambda: h.flow() == ("update", "ended"), limit=10 ** 6)
        assert "Terminal running" in h.text(), (h.text(), h.term.current().lines)
        assert updater.ReleaseRoot(root).current_slot() is None
        h.press("ENTER")
        h.term.updates.env["HANDPOS_UPDATE_BESIDE_SIM"] = str(os.getpid())
        open_entry(h, "update")
        h.press("ENTER", "ENTER")
        h.run(120000, until=lambda: h.flow() == ("update", "ended"), limit=10 ** 6)
        assert "Installed 9.1.0" in h.text(), (h.text(), h.term.current().lines)
    finally:
        lock.close()
