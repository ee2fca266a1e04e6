"""Update bundles (tools/release.py): a bundle the vendor's key signed verifies and
installs file for file; a bad signature, a key the terminal does not trust, a file whose
hash differs, a file too many, a bundle cut short are each refused with one line, and
nothing is written outside the folder being filled (docs/updates.md, "The bundle")."""
import hashlib
import io
import json
import os
import tarfile

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tools import release

ROOT = release.REPO


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("bundle") / "b.hpup")
    release.build(path, "0.2.0")
    return path


def lab_keys():
    return release.trusted_keys(ROOT, lab=True)


def members(path):
    with tarfile.open(path) as tar:
        return [(i, tar.extractfile(i).read()) for i in tar.getmembers()]


def rewrite(path, out, change):
    """The bundle with change(name, data) -> data applied to each member."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members(path):
            data = change(info.name, data)
            if data is None:
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def test_a_signed_bundle_verifies_and_fills_a_folder_file_for_file(bundle, tmp_path):
    into = tmp_path / "release"
    into.mkdir()
    manifest = release.verify(bundle, lab_keys(), into=str(into))
    assert manifest["version"] == "0.2.0"
    paths = [e["path"] for e in manifest["files"]]
    assert "firmware/terminal.py" in paths and "pyproject.toml" in paths
    assert not [p for p in paths if p.startswith("tests/") or "__pycache__" in p]
    for e in manifest["files"]:
        with open(into / e["path"], "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == e["sha256"]
    # the release says the version it was built as; the checkout is untouched
    assert 'VERSION = "0.2.0"' in (into / "firmware/core/version.py").read_text()
    from firmware.core.version import VERSION
    assert VERSION != "0.2.0"


def test_the_lab_key_is_trusted_only_on_a_lab_terminal(bundle):
    assert release.trusted_keys(ROOT, lab=False) == {}
    with pytest.raises(release.BundleError) as exc:
        release.verify(bundle, release.trusted_keys(ROOT, lab=False))
    assert "does not trust" in str(exc.value)


def test_an_altered_manifest_fails_its_signature(bundle, tmp_path):
    def change(name, data):
        if name == "manifest.json":
            doc = json.loads(data)
            doc["floor"] = "0.0.1"
            return json.dumps(doc, indent=1, sort_keys=True).encode()
        return data
    bad = rewrite(bundle, str(tmp_path / "bad.hpup"), change)
    with pytest.raises(release.BundleError) as exc:
        release.verify(bad, lab_keys())
    assert str(exc.value).startswith("bad signature: the manifest does not match")


def test_a_key_the_terminal_does_not_trust_is_refused(tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "other.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    path = str(tmp_path / "other.hpup")
    release.build(path, "0.2.0", key_path=str(pem))
    with pytest.raises(release.BundleError) as exc:
        release.verify(path, lab_keys())
    assert "does not trust" in str(exc.value)


def test_a_file_whose_hash_differs_is_refused_and_named(bundle, tmp_path):
    def change(name, data):
        if name == "files/firmware/terminal.py":
            return data.replace(b"def ", b"def_", 1)       # same size, other bytes
        return data
    bad = rewrite(bundle, str(tmp_path / "bad.hpup"), change)
    into = tmp_path / "release"
    into.mkdir()
    with pytest.raises(release.BundleError) as exc:
        release.verify(bad, lab_keys(), into=str(into))
    assert str(exc.value) == ("wrong hash: firmware/terminal.py does not match the signed "
                              "manifest (altered or damaged): get the bundle again")


def test_a_file_too_many_is_refused(bundle, tmp_path):
    bad = str(tmp_path / "bad.hpup")
    rewrite(bundle, bad, lambda n, d: d)
    with tarfile.open(bad, "a") as tar:
        info = tarfile.TarInfo("files/firmware/evil.py")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"x=1"))
    with pytest.raises(release.BundleError) as exc:
        release.verify(bad, lab_keys())
    assert "does not list" in str(exc.value)


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.999])
def test_a_bundle_cut_short_is_refused(bundle, tmp_path, keep):
    with open(bundle, "rb") as f:
        data = f.read()
    # cut inside the content (the tar's zero padding after the last file carries none)
    with tarfile.open(bundle) as tar:
        last = tar.getmembers()[-1]
    end = last.offset_data + last.size
    cut = tmp_path / "cut.hpup"
    cut.write_bytes(data[:int(end * keep)])
    with pytest.raises(release.BundleError) as exc:
        release.verify(str(cut), lab_keys())
    assert "cut short" in str(exc.value) or "not a handpos update bundle" in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("change", ["end cut", "bytes after"])
def test_a_bundle_cut_in_its_end_or_with_bytes_after_it_is_refused(bundle, tmp_path, change):
    """Every file may be whole while the archive's end is missing (a copy pulled out in
    its last kilobytes) or something follows it: neither is the bundle the vendor made."""
    with open(bundle, "rb") as f:
        data = f.read()
    bad = tmp_path / "bad.hpup"
    bad.write_bytes(data[:-tarfile.RECORDSIZE + 512] if change == "end cut" else data + b"x")
    with pytest.raises(release.BundleError) as exc:
        release.verify(str(bad), lab_keys())
    assert ("cut short" if change == "end cut" else "after its end") in str(exc.value)
    assert release.verify(bundle, lab_keys())["version"]     # the whole one still goes


def test_not_a_bundle_at_all(tmp_path):
    junk = tmp_path / "x.hpup"
    junk.write_bytes(b"hello" * 100)
    with pytest.raises(release.BundleError):
        release.verify(str(junk), lab_keys())


def test_versions_are_three_numbers():
    assert release.parse_version("1.10.2") == (1, 10, 2)
    for bad in ("1.2", "1.2.3-rc1", "", None, "a.b.c"):
        with pytest.raises(release.BundleError):
            release.parse_version(bad)
