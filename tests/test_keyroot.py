"""drivers/keyroot.py: the key root each board names, and the keys derived from it."""
import os
import stat

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
