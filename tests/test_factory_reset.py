"""Factory reset (issue 17): a technician and a supervisor together; refused, saying
which, while records are owed; audited, then the data folder's databases and keys
overwritten and removed; the next start is a new terminal's first-supervisor setup.
The key root (the simulator's root file outside the data folder) is kept."""
import os

from tests.test_network import TECH, open_entry, technician

SWIPE_OK = {"entry_modes": ["chip", "tap", "swipe"]}


def to_reset(h):
    h.press("MENU")
    open_entry(h, "settings")
    open_entry(h, "factory_reset")
    assert h.flow()[0] == "factory_reset", h.text()


def test_refused_with_a_pending_offline_record(online, net):
    h = online(**SWIPE_OK)
    net.set("reset", existing=True, new=True)
    rec = h.swipe_sale("2000")
    assert rec["offline"] == 1
    h.to_idle()
    h.term.logout("test")           # the home menu's logout would refuse (the queue)
    h.term.auth.create(TECH[0], "Technician 9", "technician", TECH[1])
    h.login(*TECH)
    to_reset(h)
    rows = h.term.current().rows
    assert rows[0] == "Not now:" and "1 offline unsent" in rows, rows
    assert "Batch 1 open" in rows                    # the sale's batch is not settled
    assert h.flow() == ("factory_reset", "check") and h.term.screen.alert == "error"
    h.press("ENTER")
    assert h.flow()[0] == "settings"
    data = h.term.config["storage"]["data_dir"]
    assert os.path.exists(os.path.join(data, "saf.db"))
    audit = [r for r in h.term.store.audit_log(10) if r[1] == "factory_reset_refused"]
    assert audit and "queue 1" in audit[0][3]


def test_a_supervisor_alone_cannot_start_it(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    h.press("MENU")
    open_entry(h, "settings")
    names = [e[1] for e in h.term.current().entries()]
    assert "factory_reset" not in names and "network" not in names


def test_done_with_both_roles_then_the_terminal_starts_as_new(harness):
    h = technician(harness)
    data = h.term.config["storage"]["data_dir"]
    root = os.path.join(os.path.dirname(data), ".sim-root", "root.key")
    root_before = open(root, "rb").read() if os.path.exists(root) else None
    to_reset(h)
    assert h.flow() == ("factory_reset", "warn") and "Wipes all records" in h.text()
    h.press("ENTER")
    h.press("1", "1", "1", "1", "ENTER")             # a wrong technician PIN
    assert "Wrong ID or PIN" in h.text() and h.flow()[1] == "tech_pin"
    h.press(*TECH[1], "ENTER")
    assert h.flow()[0] == "supervisor"
    h.press(*TECH[0], "ENTER", *TECH[1], "ENTER")    # the technician is no supervisor
    assert h.flow()[0] == "supervisor"
    h.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    assert h.flow() == ("factory_reset", "final"), h.text()
    assert "F4" in h.text()
    audit_before = [r[1] for r in h.term.store.audit_log(5)]
    assert "supervisor_ok" in audit_before
    h.press("F4")
    assert "Wiped" in h.text() and "Starting as new" in h.text()
    left = [os.path.join(b, f) for b, d, fs in os.walk(data) for f in fs]
    assert [os.path.basename(p) for p in left] in ([], ["sim.lock"]), left
    if root_before is not None:                      # the key root kept, on purpose
        assert open(root, "rb").read() == root_before
    h.close()
    h2 = harness()
    h2.first_supervisor()                            # "Welcome": the first run again
    h2.login()
    assert h2.flow() == ("idle", "idle")
    assert h2.term.payments.journal.last() is None
    assert h2.term.store.get_operator(TECH[0]) is None


def test_the_technicians_authenticator_code_is_asked_when_mfa_says_so(harness):
    """[mfa] actions with factory_reset: after the technician's PIN, their code (a wrong
    one keeps the reset from going on), then the supervisor, then the wipe."""
    from tests.test_mfa import T0, _clock, enrol
    h = technician(harness, mfa={"actions": ["factory_reset"]})
    _clock(h, T0)
    op = h.term.operator
    phone, _ = enrol(h, op, T0)
    h.term.go_home()                                 # the enrolment's stand-in asker off
    h.term.mfa.now = lambda: T0 + 60                 # a minute on: a fresh code
    to_reset(h)
    h.press("ENTER", *TECH[1], "ENTER")
    assert h.flow()[0] == "mfa_check", h.text()
    wrong = "%06d" % ((int(phone.code(T0 + 60)) + 1) % 1000000)
    h.press(*wrong, "ENTER")
    assert h.flow()[0] == "mfa_check", h.text()     # refused: still asking
    h.press(*phone.code(T0 + 60), "ENTER")
    assert h.flow()[0] == "supervisor", h.text()
    h.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    assert h.flow() == ("factory_reset", "final"), h.text()
    events = [r[1] for r in h.term.store.audit_log(20)]
    assert events[:3] == ["supervisor_ok", "mfa_ok", "mfa_failed"], events
