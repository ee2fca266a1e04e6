"""Shared by tests/test_update*.py and tests/test_backup*.py: a real terminal data folder
(made by `handpos run --board sim`, as a terminal makes its own), a configuration naming
it and a temporary release root, and the CLI run as a process."""
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
LAUNCHER = os.path.join(ROOT, "deploy", "handpos-launch")


def write_config(base, tid="HP000001", release_root=None, extra=""):
    path = os.path.join(str(base), "handpos-%s.toml" % tid)
    with open(path, "w") as f:
        f.write('[terminal]\nid = "%s"\n[storage]\ndata_dir = "%s"\n[lab]\nenabled = true\n'
                '[security]\ntest_keys = true\n[update]\nrelease_root = "%s"\n'
                'stop_command = ""\nstart_command = ""\nhealth_timeout_s = 60\n'
                # the technician's authenticator code before an apply is
                # tests/test_update_mfa.py's: not asked here
                '[mfa]\nactions = ["pin_reset", "key_load", "export", "factory_reset"]\n%s'
                % (tid, os.path.join(str(base), "data"),
                   release_root or os.path.join(str(base), "root"), extra))
    return path


def env():
    e = dict(os.environ)
    e.pop("HANDPOS_CONFIG", None)
    return e


def cli(*args, timeout=120, extra_env=None, cwd=ROOT):
    e = env()
    e.update(extra_env or {})
    return subprocess.run([PY, "-m", "tools"] + [str(a) for a in args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


def run_lock_held(data):
    import fcntl
    path = os.path.join(data, "run.lock")
    if not os.path.exists(path):
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def make_terminal(base, tid="HP000001", release_root=None):
    """A data folder the real terminal made at its first start (keys, databases, the
    boot self-test's audit row); the configuration file's path."""
    config = write_config(base, tid, release_root)
    proc = subprocess.Popen([PY, "-m", "tools", "run", "--board", "sim", "--config", config],
                            cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    data = os.path.join(str(base), "data")
    deadline = time.monotonic() + 30
    # up once it holds its data folder and its self-test has settled (1.5 s)
    while time.monotonic() < deadline and not run_lock_held(data):
        time.sleep(0.1)
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    assert os.path.exists(os.path.join(data, "keys", "keys.wrapped")), os.listdir(data)
    return config


def data_key(base):
    from board import datadir
    from board.configfile import load_profile
    return datadir.open_keys(load_profile("sim"), os.path.join(str(base), "data")).key("data")
