"""`handpos update apply` asks the authenticator code of a supervisor or technician when
[mfa] actions has "update" (docs/mfa.md "On the command line"): refused without
--operator, with a wrong code, and nothing installed; the right code installs; a grant
that is not the terminal's is refused. A data folder the simulator made, a phone
enrolled through the keypad (tests/test_cli_mfa.py's field)."""
import os
import subprocess
import sys

import pytest

from drivers import updater
from tests.test_cli_mfa import ROOT, _now_code, _wrong, field  # noqa: F401  (a fixture)
from tools import release


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("b") / "handpos-9.2.0.hpup")
    release.build(path, "9.2.0")
    return path


def apply(data, root, bundle, *extra, stdin=""):
    cfg = os.path.join(os.path.dirname(str(data)), "upd.toml")
    with open(cfg, "w") as f:
        f.write('[storage]\ndata_dir = "%s"\n[lab]\nenabled = true\n[security]\n'
                'test_keys = true\n[update]\nrelease_root = "%s"\nstop_command = ""\n'
                'start_command = ""\n' % (data, root))
    env = dict(os.environ)
    env.pop("HANDPOS_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "tools", "update", "apply", bundle,
                           "--config", cfg, "--board", "sim"] + list(extra), cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=180, env=env,
                          start_new_session=True)


def refusal(r):
    lines = [ln for ln in r.stderr.splitlines() if "refused" in ln]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].endswith("nothing was installed"), lines[0]
    return lines[0]


def test_apply_needs_the_code_and_takes_the_right_one(field, bundle, tmp_path):  # noqa: F811
    data, phone, codes, _ = field
    root = str(tmp_path / "root")
    line = refusal(apply(data, root, bundle))
    assert "needs the authenticator code" in line and "'update'" in line, line
    line = refusal(apply(data, root, bundle, "--operator", "1", "--code-stdin",
                         stdin=_wrong(phone) + "\n"))
    assert "wrong code (1 of 5" in line, line
    line = refusal(apply(data, root, bundle, "--operator", "7", "--code-stdin",
                         stdin=_now_code(phone) + "\n"))
    assert "operator 7 is a cashier" in line, line
    assert updater.ReleaseRoot(root).current_slot() is None
    # the refusals are in update.log, for the terminal's audit trail at its next start
    assert sum(1 for ln in updater.ReleaseRoot(root).log_lines()
               if ln.get("event") == "refused") == 3
    r = apply(data, root, bundle, "--operator", "1", "--code-stdin",
              stdin=_now_code(phone) + "\n")
    assert r.returncode == 0, r.stderr
    assert "[8/8] start" in r.stderr
    rr = updater.ReleaseRoot(root)
    assert rr.version_of(rr.current_slot()) == "9.2.0"


def test_a_grant_not_made_by_the_terminal_is_refused(field, bundle, tmp_path):  # noqa: F811
    data, phone, codes, _ = field
    root = str(tmp_path / "root")
    import time
    from drivers import update_runner
    forged = update_runner.grant_mac(update_runner.grant_key(b"\0" * 32), bundle, "1",
                                     int(time.time()))
    line = refusal(apply(data, root, bundle, "--grant-stdin",
                         stdin="1 %d %s\n" % (int(time.time()), forged)))
    assert "grant does not match" in line, line
    line = refusal(apply(data, root, bundle, "--grant-stdin", stdin=""))
    assert "no grant" in line, line
    assert updater.ReleaseRoot(root).current_slot() is None
