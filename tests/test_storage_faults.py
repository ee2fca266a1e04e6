"""Storage faults (issue 10, items 2, 4, 5 and 11): a full card, a damaged page, an
unreadable journal header, a flipped byte. Each one reproduced for real on the files
under a running terminal, and what the person sees checked in words.

A full disk is a small tmpfs mounted over the terminal's data folder (the tests run as
root, here and in CI; without the right to mount they are skipped) and filled with a
file until the kernel says ENOSPC; space returns when the file goes.
"""
import os
import sqlite3
import subprocess

import pytest


# -- a card that fills up ------------------------------------------------------------
class SmallDisk:
    def __init__(self, path, size="2m"):
        self.path = str(path)
        self.filler = os.path.join(self.path, "filler")
        os.makedirs(self.path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs",
                            self.path], capture_output=True)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.decode().strip())

    def fill(self):
        """Take every free byte (the kernel answers ENOSPC)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 16, 1 << 12, 1 << 9, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError:
                        break
        finally:
            os.close(fd)
        st = os.statvfs(self.path)
        assert st.f_bavail == 0

    def free(self):
        os.unlink(self.filler)

    def umount(self):
        subprocess.run(["umount", "-l", self.path], capture_output=True)


@pytest.fixture
def disk(tmp_path):
    d = SmallDisk(tmp_path / "terminal")
    yield d
    d.umount()


def _ready(harness, **kw):
    h = harness(**kw)
    h.first_supervisor()
    h.login()
    return h


def test_full_disk_cash_sale_says_storage_full_and_goes_on_when_space_returns(harness, disk):
    h = _ready(harness)
    h.press("1", "2", "5", "0", "ENTER", "2", "ENTER")
    h.press("ENTER", "CANCEL")
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    before = len(h.term.payments.journal.find())
    disk.fill()
    errors = h.reactor.errors
    h.press("2", "0", "0", "0", "ENTER", "2", "ENTER")
    text = h.text()
    assert "STORAGE FULL" in text and "No new sales" in text and "Nothing lost" in text, text
    assert h.reactor.errors == errors            # no traceback
    h.press("ENTER", "5")                        # nothing starts a sale
    assert "STORAGE FULL" in h.text()
    disk.free()
    h.advance(30100)                             # the terminal's own retry timer (30 s at most)
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    assert h.flow() == ("idle", "idle"), h.text()
    assert len(h.term.payments.journal.find()) == before
    h.press("1", "0", "0", "ENTER", "2", "ENTER")
    assert h.term.screen.big == "0.00"
    assert len(h.term.payments.journal.find()) == before + 1
