"""deploy/install.sh into a staging root: what it writes, that a second run changes
nothing, --dry-run writes nothing, and that it refuses a system that is not Debian."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL = os.path.join(ROOT, "deploy", "install.sh")
CONFIG_TXT = "dtparam=audio=on\ncamera_auto_detect=1\n\n[cm4]\notg_mode=1\n"
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=0ddba11-02 rootfstype=ext4 rootwait\n"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemctl") is None,
    reason="the install uses systemd-sysusers and systemctl --root (systemd not installed)")


def _stage(tmp_path):
    root = tmp_path / "root"
    (root / "boot" / "firmware").mkdir(parents=True)
    (root / "boot" / "firmware" / "config.txt").write_text(CONFIG_TXT)
    (root / "boot" / "firmware" / "cmdline.txt").write_text(CMDLINE)
    return root


def _install(root, *args, env=None):
    run = subprocess.run(["bash", INSTALL, "--root", str(root)] + list(args),
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, **(env or {})))
    return run


def _snapshot(root):
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            else:
                st = os.stat(path)
                with open(path, "rb") as f:
                    out[rel] = (f.read(), oct(st.st_mode & 0o7777), st.st_mtime_ns)
    return out


EXPECTED = {
    "etc/handpos/handpos.toml", "etc/default/handpos", "etc/systemd/system/handpos.service",
    "etc/systemd/system/multi-user.target.wants/handpos.service",
    "etc/udev/rules.d/99-handpos.rules", "etc/polkit-1/rules.d/50-handpos.rules",
    "usr/lib/sysusers.d/handpos.conf", "usr/lib/tmpfiles.d/handpos.conf",
    "etc/passwd", "etc/group", "boot/firmware/config.txt", "boot/firmware/cmdline.txt",
}


def test_a_real_run_writes_the_files_and_a_second_changes_nothing(tmp_path):
    root = _stage(tmp_path)
    first = _install(root, "--board", "pi5")
    assert first.returncode == 0, first.stderr + first.stdout
    files = _snapshot(root)
    assert EXPECTED <= set(files), EXPECTED - set(files)
    if shutil.which("dtc"):
        assert "boot/firmware/overlays/handpos-keypad.dtbo" in files
    else:
        assert "no dtc here" in first.stdout
    same = lambda rel, src: files[rel][0] == open(os.path.join(ROOT, src), "rb").read()
    assert same("etc/systemd/system/handpos.service", "board/handpos.service")
    assert same("etc/handpos/handpos.toml", "config/handpos.example.toml")
    assert files["etc/handpos/handpos.toml"][1] == "0o640"
    assert same("etc/udev/rules.d/99-handpos.rules", "deploy/udev/99-handpos.rules")
    assert files["etc/default/handpos"][0].decode().splitlines()[-1] == "HANDPOS_BOARD=pi5"
    assert files["etc/systemd/system/multi-user.target.wants/handpos.service"] == \
        ("link", "/etc/systemd/system/handpos.service")
    groups = {l.split(":")[0]: l.strip().split(":")[3].split(",")
              for l in files["etc/group"][0].decode().splitlines()}
    for g in ("input", "dialout", "gpio", "i2c", "spi", "video", "tss", "lp"):
        assert "handpos" in groups[g], g
    passwd = [l for l in files["etc/passwd"][0].decode().splitlines() if l.startswith("handpos:")]
    assert passwd and passwd[0].endswith(":/var/lib/handpos:/usr/sbin/nologin")
    config = files["boot/firmware/config.txt"][0].decode()
    assert config.startswith(CONFIG_TXT)
    assert "[all]\ndtoverlay=spi0-1cs\ndtparam=uart0=on\ndtoverlay=handpos-keypad,row0=4," in config
    assert files["boot/firmware/cmdline.txt"][0].decode() == \
        "console=tty1 root=PARTUUID=0ddba11-02 rootfstype=ext4 rootwait\n"

    second = _install(root, "--board", "pi5")
    assert second.returncode == 0, second.stderr
    assert "done: nothing to change" in second.stdout
    assert _snapshot(root) == files                   # not a byte, mode or mtime moved


def test_an_edited_configuration_is_kept_and_a_changed_board_replaces_its_lines(tmp_path):
    root = _stage(tmp_path)
    assert _install(root, "--board", "pi5").returncode == 0
    toml = root / "etc" / "handpos" / "handpos.toml"
    toml.write_text("# the technician's own\n")
    run = _install(root, "--board", "pi4")
    assert run.returncode == 0, run.stderr
    assert toml.read_text() == "# the technician's own\n"
    config = (root / "boot" / "firmware" / "config.txt").read_text()
    assert "dtoverlay=disable-bt" in config and "spi0-1cs" not in config
    assert config.count("# handpos: begin") == 1
    assert (root / "etc" / "default" / "handpos").read_text().endswith("HANDPOS_BOARD=pi4\n")


def test_a_dry_run_prints_each_action_and_writes_nothing(tmp_path):
    root = _stage(tmp_path)
    before = _snapshot(root)
    run = _install(root, "--board", "pizero2w", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert _snapshot(root) == before
    out = run.stdout
    for line in ("install /etc/systemd/system/handpos.service",
                 "install /etc/udev/rules.d/99-handpos.rules",
                 "install /etc/handpos/handpos.toml",
                 "+ systemd-sysusers --root=",
                 "+ systemctl --root=",
                 "would change %s/boot/firmware/config.txt" % root,
                 "dtoverlay=tpm-slb9670"):
        assert line in out, line
    # and after a real run, a dry run sees nothing to do
    assert _install(root, "--board", "pizero2w").returncode == 0
    again = _install(root, "--board", "pizero2w", "--dry-run")
    assert "done: nothing to change" in again.stdout, again.stdout


def test_it_refuses_a_system_that_is_not_debian(tmp_path):
    fake = tmp_path / "os-release"
    fake.write_text('ID=fedora\nID_LIKE=""\nVERSION_CODENAME=""\n')
    run = subprocess.run(["bash", INSTALL, "--board", "pi4", "--dry-run"], capture_output=True,
                         text=True, env=dict(os.environ, HANDPOS_OS_RELEASE=str(fake)))
    assert run.returncode != 0
    assert "not Debian or Raspberry Pi OS (fedora)" in run.stderr and "--root" in run.stderr
    assert run.stdout == ""                          # nothing was attempted
    raspbian = tmp_path / "raspbian"
    raspbian.write_text("ID=raspbian\nID_LIKE=debian\nVERSION_CODENAME=bookworm\n")
    run = subprocess.run(["bash", INSTALL, "--board", "pi4", "--dry-run"], capture_output=True,
                         text=True, env=dict(os.environ, HANDPOS_OS_RELEASE=str(raspbian)))
    assert run.returncode == 0, run.stderr
    assert "dry run: nothing is changed" in run.stdout
    if not os.path.exists("/boot/firmware/config.txt"):      # not a Pi: said, not fatal
        assert "no /boot/firmware/config.txt" in run.stdout and "a real run stops here" in run.stdout


def test_the_sim_board_and_unknown_options_are_refused(tmp_path):
    root = _stage(tmp_path)
    run = _install(root, "--board", "sim")
    assert run.returncode != 0 and "not a Raspberry Pi board profile" in run.stderr
    run = _install(root, "--bored", "pi4")
    assert run.returncode == 2 and "unknown option --bored" in run.stderr
