"""drivers/keyroot.py: the key root each board names, and the keys derived from it."""
import os
import shutil
import socket
import stat
import subprocess

import pytest

from drivers import keyroot
from drivers.keyroot import FileRoot, KeyRootError, KeyRootMissing, hkdf_sha256, open_root


# --- HKDF ---------------------------------------------------------------------------

def test_hkdf_matches_rfc5869_case_1():
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = hkdf_sha256(ikm, info, 42, salt)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_hkdf_matches_rfc5869_case_3_no_salt_no_info():
    okm = hkdf_sha256(bytes.fromhex("0b" * 22), b"", 42)
    assert okm.hex() == ("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                         "9d201395faa4b61a96c8")


def test_hkdf_agrees_with_cryptography():
    hkdf_mod = pytest.importorskip("cryptography.hazmat.primitives.kdf.hkdf")
    from cryptography.hazmat.primitives import hashes
    ikm = os.urandom(32)
    for info in (b"", b"handpos kek v1", b"x" * 300):
        want = hkdf_mod.HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)
        assert hkdf_sha256(ikm, info) == want


# --- the file root --------------------------------------------------------------------

@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir(mode=0o700)
    return str(d)


def _key_path(data_dir, rel=".root/root.key"):
    return os.path.join(os.path.dirname(data_dir), rel)


def test_file_root_missing_without_create_is_refused_and_nothing_is_made(data_dir):
    with pytest.raises(KeyRootMissing) as exc:
        open_root({"kind": "file", "path": ".root/root.key"}, data_dir)
    assert "missing" in str(exc.value)
    assert not os.path.exists(_key_path(data_dir))


def test_file_root_created_outside_data_dir_root_only(data_dir):
    root = open_root({"kind": "file", "path": ".root/root.key"}, data_dir, create=True)
    path = _key_path(data_dir)
    assert root.path == path
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert st.st_size == 32
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    # no temporary file left beside it
    assert os.listdir(os.path.dirname(path)) == ["root.key"]
    assert root.kind == "file" and root.strong is False


def test_file_root_kek_is_hkdf_of_the_file_and_stable_across_opens(data_dir):
    spec = {"kind": "file", "path": ".root/root.key"}
    first = open_root(spec, data_dir, create=True)
    with open(_key_path(data_dir), "rb") as f:
        secret = f.read()
    again = open_root(spec, data_dir)               # second start: opened, not replaced
    assert first.kek() == again.kek() == hkdf_sha256(secret, b"handpos kek v1")
    assert len(first.kek()) == 32
    assert first.kek(b"other use") != first.kek()
    assert secret not in repr(first).encode() and secret.hex() not in repr(first)


def test_create_true_keeps_an_existing_root(data_dir):
    spec = {"kind": "file", "path": ".root/root.key"}
    kek = open_root(spec, data_dir, create=True).kek()
    assert open_root(spec, data_dir, create=True).kek() == kek


def test_two_terminals_get_different_roots(tmp_path):
    a, b = tmp_path / "a" / "data", tmp_path / "b" / "data"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    spec = {"kind": "file", "path": "root.key"}
    assert open_root(spec, str(a), create=True).kek() != open_root(spec, str(b), create=True).kek()


def test_absolute_path_is_used_as_given(tmp_path, data_dir):
    path = str(tmp_path / "elsewhere" / "k")
    root = open_root({"kind": "file", "path": path}, data_dir, create=True)
    assert root.path == path and os.path.getsize(path) == 32


def test_root_inside_data_dir_is_refused(data_dir):
    with pytest.raises(KeyRootError) as exc:
        open_root({"kind": "file", "path": os.path.join(data_dir, "root.key")}, data_dir,
                  create=True)
    assert "inside the data folder" in str(exc.value)
    with pytest.raises(KeyRootError):
        open_root({"kind": "file", "path": "data/keys/root.key"}, data_dir, create=True)
    assert os.listdir(data_dir) == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_file_open_to_others_is_refused_and_left_alone(data_dir, mode):
    spec = {"kind": "file", "path": ".root/root.key"}
    open_root(spec, data_dir, create=True)
    path = _key_path(data_dir)
    with open(path, "rb") as f:
        before = f.read()
    os.chmod(path, mode)
    with pytest.raises(KeyRootError) as exc:
        open_root(spec, data_dir, create=True)
    msg = str(exc.value)
    assert "mode %03o" % mode in msg and "chmod 600 %s" % path in msg
    if mode & 0o044:
        assert "readable by other users" in msg
    with open(path, "rb") as f:
        assert f.read() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another uid")
def test_file_owned_by_another_user_is_refused(data_dir):
    spec = {"kind": "file", "path": ".root/root.key"}
    open_root(spec, data_dir, create=True)
    os.chown(_key_path(data_dir), 4321, -1)
    with pytest.raises(KeyRootError) as exc:
        open_root(spec, data_dir)
    assert "owned by uid 4321" in str(exc.value) and "chown" in str(exc.value)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_wrong_length_is_refused_never_replaced(data_dir, size):
    spec = {"kind": "file", "path": ".root/root.key"}
    open_root(spec, data_dir, create=True)
    path = _key_path(data_dir)
    with open(path, "r+b") as f:
        f.truncate(size)
    with pytest.raises(KeyRootError) as exc:
        open_root(spec, data_dir, create=True)
    assert "not 32" in str(exc.value) and not isinstance(exc.value, KeyRootMissing)
    assert os.path.getsize(path) == size


def test_symlink_is_refused(tmp_path, data_dir):
    real = tmp_path / "real.key"
    real.write_bytes(os.urandom(32))
    os.chmod(real, 0o600)
    folder = tmp_path / ".root"
    folder.mkdir(mode=0o700)
    os.symlink(real, folder / "root.key")
    with pytest.raises(KeyRootError) as exc:
        open_root({"kind": "file", "path": ".root/root.key"}, data_dir)
    assert "symbolic link" in str(exc.value)


def test_folder_writable_by_others_is_refused(tmp_path, data_dir):
    folder = tmp_path / ".root"
    folder.mkdir()
    os.chmod(folder, 0o777)
    with pytest.raises(KeyRootError) as exc:
        open_root({"kind": "file", "path": ".root/root.key"}, data_dir, create=True)
    assert "chmod 700" in str(exc.value)
    assert os.listdir(folder) == []


def test_directory_in_place_of_the_file_is_refused(tmp_path, data_dir):
    (tmp_path / ".root").mkdir(mode=0o700)
    (tmp_path / ".root" / "root.key").mkdir(mode=0o700)
    with pytest.raises(KeyRootError) as exc:
        open_root({"kind": "file", "path": ".root/root.key"}, data_dir, create=True)
    assert "not a regular file" in str(exc.value)


def test_root_appearing_during_create_is_kept(data_dir, monkeypatch):
    """Two starts racing: the one that links second keeps the first one's root."""
    path = _key_path(data_dir)
    os.makedirs(os.path.dirname(path), mode=0o700)
    theirs = os.urandom(32)
    real_link = os.link

    def racing_link(src, dst):
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, theirs)
        os.close(fd)
        return real_link(src, dst)

    monkeypatch.setattr(keyroot.os, "link", racing_link)
    root = open_root({"kind": "file", "path": ".root/root.key"}, data_dir, create=True)
    assert root.kek() == hkdf_sha256(theirs, b"handpos kek v1")
    assert os.listdir(os.path.dirname(path)) == ["root.key"]


def test_describe_fits_a_row_and_says_weak(data_dir):
    root = open_root({"kind": "file", "path": ".root/root.key"}, data_dir, create=True)
    assert len(root.describe()) <= 18 and "weak" in root.describe()
    assert root.path in root.detail() and "weak" in root.detail()


# --- the spec -------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [None, {}, {"kind": "hsm"}, {"kind": "file"}])
def test_bad_spec_says_what_to_write(spec, data_dir):
    with pytest.raises(KeyRootError) as exc:
        open_root(spec, data_dir)
    assert "[keyroot]" in str(exc.value) or "keyroot" in str(exc.value)


# --- the OTP root, through a stand-in vcmailbox ----------------------------------------
#
# The stand-in is a program in vcmailbox's place that behaves as the real one with the
# firmware behind it: it builds the property buffer from its arguments as vcmailbox.c
# does ((argc+2) words, request code 0, the tags, an end tag), lets a firmware model
# answer, and prints every word as "0x%08x ". The OTP rows and the board's situation
# come from a JSON file beside it.

VCMAILBOX = r'''#!%(python)s
import json, sys
state = json.load(open(%(state)r))
if state.get("vcio") != "ok":
    print("Can't open device file: /dev/vcio")
    print("Try creating a device file with: sudo mknod /dev/vcio c 100 0")
    sys.exit(255)
args = [int(a, 0) & 0xffffffff for a in sys.argv[1:]]
words = [(len(sys.argv) + 2) * 4, 0] + args + [0]
with open(%(log)r, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
# the firmware: walk the tags; answer the OTP private key read if this board has it
i = 2
while i < len(words) and words[i] != 0:
    tag, size = words[i], words[i + 1]
    if tag == 0x00030081 and state.get("firmware") == "otp":
        offset, count = words[i + 3], words[i + 4]
        if offset + count > 8 or 8 + 4 * count > size:
            words[1] = 0x80000001
            break
        rows = state["otp"]
        for k in range(count):
            words[i + 5 + k] = rows[offset + k]
        words[i + 2] = 0x80000000 | (8 + 4 * count)
    i += 3 + size // 4
else:
    words[1] = 0x80000000
if state.get("garble"):
    print("ioctl_set_msg failed:-1")
    words = words[:5]
for w in words:
    sys.stdout.write("0x%%08x " %% w)
sys.stdout.write("\n")
'''

# the example key of the Raspberry Pi documentation, as rpi-otp-private-key prints it
DOC_KEY = "f8dbc7b0a4fcfb1d706e298ac9d0485c2226ce8df7f7596ac77337bd09fbe160"


class StandInMailbox:
    def __init__(self, folder):
        import json
        import sys
        self._json = json
        self.state_path = str(folder / "state.json")
        self.log_path = str(folder / "calls.log")
        self.path = str(folder / "vcmailbox")
        self.device = str(folder / "vcio")
        with open(self.path, "w") as f:
            f.write(VCMAILBOX % {"python": sys.executable, "state": self.state_path,
                                 "log": self.log_path})
        os.chmod(self.path, 0o755)
        open(self.device, "w").close()
        self.set(vcio="ok", firmware="otp", otp=[int(DOC_KEY[i:i + 8], 16) for i in range(0, 64, 8)])

    def set(self, **state):
        with open(self.state_path, "w") as f:
            self._json.dump(state, f)

    @property
    def spec(self):
        return {"kind": "otp", "vcmailbox": self.path, "device": self.device}

    def calls(self):
        with open(self.log_path) as f:
            return f.read().splitlines()


@pytest.fixture
def mailbox(tmp_path):
    return StandInMailbox(tmp_path)


def test_otp_key_read_in_rpi_otp_private_key_byte_order(mailbox, data_dir):
    root = open_root(mailbox.spec, data_dir)
    assert root.kind == "otp" and root.strong is True
    assert root.kek() == hkdf_sha256(bytes.fromhex(DOC_KEY), b"handpos kek v1")
    assert root.kek(b"pepper") != root.kek()
    # the read rpi-otp-private-key makes: tag, 40-byte buffers, offset 0, 8 rows
    assert mailbox.calls() == ["0x00030081 40 40 0 8 0 0 0 0 0 0 0 0"]
    assert DOC_KEY not in repr(root)


def test_otp_describe_fits_a_row(mailbox, data_dir):
    root = open_root(mailbox.spec, data_dir)
    assert len(root.describe()) <= 18 and "OTP" in root.describe()
    assert "OTP" in root.detail()


def test_otp_not_programmed_is_refused_with_the_provisioning_command(mailbox, data_dir):
    mailbox.set(vcio="ok", firmware="otp", otp=[0] * 8)
    with pytest.raises(KeyRootError) as exc:
        open_root(mailbox.spec, data_dir, create=True)
    assert "not programmed" in str(exc.value) and "rpi-otp-private-key -w" in str(exc.value)
    assert not isinstance(exc.value, KeyRootMissing)   # create=True cannot write OTP


def test_otp_partly_zero_key_is_a_key(mailbox, data_dir):
    mailbox.set(vcio="ok", firmware="otp", otp=[0] * 7 + [1])
    assert open_root(mailbox.spec, data_dir).kek() == hkdf_sha256(bytes(31) + b"\x01",
                                                                  b"handpos kek v1")


def test_otp_mailbox_without_permission_names_the_group(mailbox, data_dir):
    mailbox.set(vcio="denied")
    with pytest.raises(KeyRootError) as exc:
        open_root(mailbox.spec, data_dir)
    assert "video group" in str(exc.value) and mailbox.device in str(exc.value)


def test_otp_no_mailbox_device_says_not_a_pi(mailbox, data_dir):
    mailbox.set(vcio="missing")
    os.unlink(mailbox.device)
    with pytest.raises(KeyRootError) as exc:
        open_root(mailbox.spec, data_dir)
    assert "no firmware mailbox" in str(exc.value)


def test_otp_board_without_the_key_says_so(mailbox, data_dir):
    """A Zero 2 W (or old firmware) leaves the tag unanswered: no response bit."""
    mailbox.set(vcio="ok", firmware="none")
    with pytest.raises(KeyRootError) as exc:
        open_root(mailbox.spec, data_dir)
    assert "does not read the OTP customer key" in str(exc.value)


def test_otp_garbled_answer_is_refused(mailbox, data_dir):
    mailbox.set(vcio="ok", firmware="otp", otp=[1] * 8, garble=True)
    with pytest.raises(KeyRootError):
        open_root(mailbox.spec, data_dir)


def test_otp_tool_missing_says_what_to_install(tmp_path, data_dir):
    with pytest.raises(KeyRootError) as exc:
        open_root({"kind": "otp", "vcmailbox": str(tmp_path / "nope")}, data_dir)
    assert "install raspi-utils" in str(exc.value)


# --- the TPM root, against swtpm -------------------------------------------------------

TPM_TOOLS = ("tpm2_unseal", "tpm2_createprimary", "tpm2_create", "tpm2_load",
             "tpm2_evictcontrol", "tpm2_flushcontext")
_missing = [t for t in ("swtpm",) + TPM_TOOLS if shutil.which(t) is None]
needs_swtpm = pytest.mark.skipif(bool(_missing), reason="needs swtpm and tpm2-tools (Debian "
                                 "swtpm, tpm2-tools; make fonts installs them); missing: %s"
                                 % ", ".join(_missing))


def _free_port_pair():
    """A port P with P+1 also free: the swtpm TCTI finds the control channel at P+1."""
    for _ in range(100):
        a, b = socket.socket(), socket.socket()
        try:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
        finally:
            a.close()
            b.close()
    raise RuntimeError("no free pair of ports")


class SwTpm:
    """A software TPM 2.0 whose state lives in a folder, so it can be restarted."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)
        self.proc = None

    def start(self):
        for _ in range(5):
            port = _free_port_pair()
            proc = subprocess.Popen(
                ["swtpm", "socket", "--tpm2", "--tpmstate", "dir=%s" % self.state_dir,
                 "--server", "type=tcp,port=%d" % port, "--ctrl", "type=tcp,port=%d" % (port + 1),
                 "--flags", "not-need-init,startup-clear"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            # ready when the data port accepts; gone when it lost the race for a port
            while proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    try:
                        proc.wait(timeout=0.05)     # exits if it lost a port to someone else
                    except subprocess.TimeoutExpired:
                        pass
            if proc.poll() is None:
                self.proc, self.port = proc, port
                self.tcti = "swtpm:host=127.0.0.1,port=%d" % port
                return self
        raise RuntimeError("swtpm did not start: %s" % proc.stderr.read().decode())

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
            self.proc.stderr.close()
            self.proc = None

    def tool(self, *argv):
        env = dict(os.environ, TPM2TOOLS_TCTI=self.tcti)
        subprocess.run(list(argv), env=env, check=True, capture_output=True)


@pytest.fixture
def swtpm(tmp_path):
    tpm = SwTpm(str(tmp_path / "tpmstate")).start()
    yield tpm
    tpm.stop()


@needs_swtpm
def test_tpm_missing_root_without_create_is_missing(swtpm, data_dir):
    with pytest.raises(KeyRootMissing) as exc:
        open_root({"kind": "tpm", "tcti": swtpm.tcti, "handle": "0x81010001"}, data_dir)
    assert "0x81010001" in str(exc.value)


@needs_swtpm
def test_tpm_provisioned_root_survives_a_restart(swtpm, data_dir):
    spec = {"kind": "tpm", "tcti": swtpm.tcti, "handle": "0x81010001"}
    root = open_root(spec, data_dir, create=True)
    assert root.kind == "tpm" and root.strong is True
    assert len(root.describe()) <= 18 and "TPM" in root.describe()
    assert "0x81010001" in root.detail()
    kek = root.kek()
    assert len(kek) == 32 and root.kek(b"other") != kek
    assert open_root(spec, data_dir, create=True).kek() == kek     # kept, not replaced
    swtpm.stop()
    swtpm.start()                                                 # a reboot: same TPM state
    spec["tcti"] = swtpm.tcti
    assert open_root(spec, data_dir).kek() == kek


@needs_swtpm
def test_tpm_roots_differ_between_tpms(tmp_path, data_dir):
    a = SwTpm(str(tmp_path / "a")).start()
    b = SwTpm(str(tmp_path / "b")).start()
    try:
        ka = open_root({"kind": "tpm", "tcti": a.tcti}, data_dir, create=True).kek()
        kb = open_root({"kind": "tpm", "tcti": b.tcti}, data_dir, create=True).kek()
    finally:
        a.stop()
        b.stop()
    assert ka != kb


@needs_swtpm
def test_tpm_handle_holding_something_else_is_refused_not_replaced(swtpm, data_dir, tmp_path):
    ctx = str(tmp_path / "p.ctx")
    swtpm.tool("tpm2_createprimary", "-Q", "-C", "o", "-c", ctx)
    swtpm.tool("tpm2_evictcontrol", "-Q", "-C", "o", "-c", ctx, "0x81010002")
    swtpm.tool("tpm2_flushcontext", "-t")
    spec = {"kind": "tpm", "tcti": swtpm.tcti, "handle": "0x81010002"}
    with pytest.raises(KeyRootError) as exc:
        open_root(spec, data_dir, create=True)
    assert "not a key root" in str(exc.value) and not isinstance(exc.value, KeyRootMissing)
    with pytest.raises(KeyRootError):                               # still there, still not ours
        open_root(spec, data_dir, create=True)


@needs_swtpm
def test_tpm_not_reachable_names_the_tcti(swtpm, data_dir):
    tcti = swtpm.tcti
    swtpm.stop()
    with pytest.raises(KeyRootError) as exc:
        open_root({"kind": "tpm", "tcti": tcti}, data_dir, create=True)
    assert "TPM not reachable at %s" % tcti in str(exc.value)


@needs_swtpm
def test_tpm_device_missing_names_the_device(tmp_path, data_dir):
    tcti = "device:%s" % (tmp_path / "tpmrm0")
    with pytest.raises(KeyRootError) as exc:
        open_root({"kind": "tpm", "tcti": tcti}, data_dir)
    assert "TPM not reachable at %s" % tcti in str(exc.value)


def test_tpm_tools_missing_says_what_to_install(tmp_path, data_dir):
    with pytest.raises(KeyRootError) as exc:
        open_root({"kind": "tpm", "tools": str(tmp_path)}, data_dir)
    assert "install tpm2-tools" in str(exc.value)


@pytest.mark.parametrize("handle", ["0x01000001", "0x81800000", "abc", 5])
def test_tpm_handle_outside_the_persistent_range_is_refused(handle, data_dir):
    with pytest.raises(KeyRootError) as exc:
        open_root({"kind": "tpm", "handle": handle}, data_dir)
    assert "persistent handle" in str(exc.value)


# --- the [keyroot] table and the board profiles ----------------------------------------

@pytest.mark.parametrize("spec, words", [
    ({"kind": "file", "path": "k", "mode": "600"}, "mode: not a setting"),
    ({"kind": "otp", "path": "x"}, "path: not a setting"),
    ({"kind": "tpm", "handle": "0x1"}, "persistent handle"),
    ({"kind": "tpm", "tcti": 5}, "must be a string"),
    ({"kind": "file", "path": ""}, "needs a path"),
    ("file", "must be a table"),
])
def test_check_spec_names_each_mistake(spec, words):
    problems = keyroot.check_spec(spec)
    assert len(problems) == 1 and words in problems[0]


@pytest.mark.parametrize("board, kind", [("sim", "file"), ("pizero2w", "tpm"), ("pi4", "otp")])
def test_each_board_names_its_key_root(board, kind):
    from board.configfile import load_profile
    spec = load_profile(board)["keyroot"]
    assert spec["kind"] == kind and keyroot.check_spec(spec) == []


def test_sim_root_lands_beside_the_data_folder(tmp_path):
    from board.configfile import load_profile
    data = tmp_path / ".sim"
    data.mkdir(mode=0o700)
    root = open_root(load_profile("sim")["keyroot"], str(data), create=True)
    assert root.path == str(tmp_path / ".sim-root" / "root.key")
    assert root.describe() == "Keys: file (weak)"


def test_profile_without_a_key_root_is_refused(tmp_path):
    from board.configfile import ConfigError, PROFILE_DIR, load_profile
    with open(os.path.join(PROFILE_DIR, "sim.toml")) as f:
        text = f.read()
    cut = text[:text.index("[keyroot]")]
    path = tmp_path / "nokey.toml"
    path.write_text(cut)
    with pytest.raises(ConfigError) as exc:
        load_profile(str(path))
    assert "no [keyroot] table" in exc.value.problems[0]
    path.write_text(cut + '[keyroot]\nkind = "hsm"\n')
    with pytest.raises(ConfigError) as exc:
        load_profile(str(path))
    assert "kind 'hsm' is not known" in exc.value.problems[0]
