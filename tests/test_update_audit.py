"""The terminal audits update.log once per line (drivers/updater.audit_log): a line is
never audited twice, and a log made anew (a release root installed again from nothing)
is audited from its first line, not from the number the old log had reached."""
from drivers import updater


class Store:
    """The two settings calls and the audit row audit_log uses, kept in memory."""

    def __init__(self):
        self.settings = {}
        self.rows = []

    def get_setting(self, key):
        return self.settings.get(key)

    def set_setting(self, key, value):
        self.settings[key] = value

    def _audit(self, event, operator, detail):
        self.rows.append((event, detail))


def test_each_line_once_and_a_new_log_from_its_start(tmp_path):
    root = str(tmp_path / "root")
    rr = updater.ReleaseRoot(root)
    for event in ("apply_verify", "apply_check", "apply_switch"):
        rr.log(event, "first log")
    store = Store()
    assert updater.audit_log(root, store) == 3
    assert updater.audit_log(root, store) == 0              # nothing twice
    rr.log("marked_good", "first log")
    assert updater.audit_log(root, store) == 1
    assert [r[0] for r in store.rows] == ["update_apply_verify", "update_apply_check",
                                          "update_apply_switch", "update_marked_good"]
    # the release root made again: its log starts at #1 with other times
    import os
    import time
    os.unlink(rr.log_path)
    time.sleep(1.1)                                         # the log's times are seconds
    for event in ("apply_verify", "apply_switch"):
        rr.log(event, "second log")
    assert updater.audit_log(root, store) == 2
    assert [r[1].split(" ", 2)[2] for r in store.rows[-2:]] == ["second log", "second log"]


def test_a_mark_from_before_the_times_were_kept_still_counts(tmp_path):
    root = str(tmp_path / "root")
    rr = updater.ReleaseRoot(root)
    for event in ("apply_verify", "apply_check"):
        rr.log(event)
    store = Store()
    store.settings[updater.AUDITED_SETTING] = "1"           # an older release's mark
    assert updater.audit_log(root, store) == 1
    assert store.rows[0][0] == "update_apply_check"
