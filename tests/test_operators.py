"""Operators (issue 15, items 1 and 2) on the whole simulated board: the lockout that a
restart keeps, least privilege, the second person, managing operators, PIN changes."""
from firmware.security.auth import epoch_of

SECOND = {"second_person": True}


def _wrong(h, op_id="1", pin="9991"):
    h.press(*op_id)
    h.press("ENTER", *pin)
    h.press("ENTER")


def _audit(h, event):
    return [row for row in h.term.store.audit_log(500) if row[1] == event]


def _logout(h):
    h.to_idle(tries=8)
    h.press("F4")
    h.run(500, until=lambda: h.flow() == ("login", "id"))


def test_a_lockout_and_the_count_before_it_survive_a_restart(harness):
    h = harness()
    h.first_supervisor()
    for _ in range(4):
        _wrong(h)
        assert "Wrong ID or PIN" in h.text()
    h.close()
    h = harness()                      # the count of 4 was kept: one more locks
    h.boot()
    h.wait_for("Operator ID")
    _wrong(h)
    assert "ID 1 locked" in h.text() and "Try again in 15 min" in h.text(), h.text()
    assert _audit(h, "lockout")
    h.close()
    h = harness()                      # still locked after a restart, the right PIN too
    h.boot()
    h.wait_for("Operator ID")
    h.press("1", "ENTER")
    assert "ID 1 locked" in h.text(), h.text()
    h.press("CANCEL")
    h.advance(15 * 60000 + 1000)       # this run's clock: the lockout ends
    h.login("1", "2580")
    assert h.flow() == ("idle", "idle"), h.text()


def test_a_technician_sells_nothing_and_is_told_so(harness):
    h = harness()
    h.first_supervisor()
    h.term.auth.create("9", "Technician 9", "technician", "4826")
    h.login("9", "4826")
    h.press("5", "0", "0")             # digits on the idle screen start no sale
    assert "Not for your role" in h.text(), h.text()
    h.press("ENTER")
    h.sim.scan("6901234567892")
    h.run(500)
    assert "Not for your role" in h.text(), h.text()
    h.press("ENTER", "MENU", "1")
    assert "Not for your role" in h.text()
    assert h.term.payments.journal.last() is None
    refused = _audit(h, "refused")
    assert refused and all(r[2] == "9" for r in refused)


def test_a_cashier_sees_no_operator_and_cannot_approve_a_refund(harness):
    h = harness(auth=SECOND)
    h.first_supervisor()
    h.term.auth.create("7", "Cashier 7", "cashier", "1357")
    h.login("7", "1357")
    h.press("MENU", "6")
    assert "Operators" not in h.text() and "Change my PIN" in h.text(), h.text()
    h.press("CANCEL", "CANCEL")
    h.run(500, until=lambda: h.flow() == ("idle", "idle"))
    h.press("MENU", "2")               # Refund: a supervisor's ID and PIN, never the cashier's
    assert h.flow() == ("supervisor", "id"), h.text()
    h.press("7", "ENTER")              # the cashier's own ID: refused before any PIN
    assert "Needs another person" in h.text(), h.text()
    h.term.auth.create("8", "Cashier 8", "cashier", "2468")
    h.press("8", "ENTER", "2", "4", "6", "8", "ENTER")     # another cashier: no supervisor
    assert "Not a supervisor" in h.text(), h.text()
    assert h.flow() == ("supervisor", "id")
    assert [r for r in _audit(h, "supervisor_refused") if r[2] == "8"]


def test_a_supervisor_needs_another_supervisor_for_a_refund(harness):
    h = harness(auth=SECOND)
    h.first_supervisor()
    h.term.auth.create("2", "Supervisor 2", "supervisor", "3691")
    h.login()
    h.press("MENU", "2")
    # not asked for its own PIN: the ID is asked, and its own is refused
    assert h.flow() == ("supervisor", "id"), h.text()
    h.press("1", "ENTER")
    assert "Needs another person" in h.text(), h.text()
    assert h.flow() == ("supervisor", "id")
    h.press("2", "ENTER", "3", "6", "9", "1", "ENTER")
    assert h.flow()[0] != "supervisor", h.text()
    ok = _audit(h, "supervisor_ok")
    assert ok and ok[0][2] == "2" and ok[0][3] == "menu_refund for 1"


def test_managing_operators_disable_role_reset_and_the_last_supervisor(harness):
    h = harness(auth=SECOND, mfa={"actions": []})     # no authenticator asked here
    h.first_supervisor()
    h.term.auth.create("2", "Supervisor 2", "supervisor", "3691")
    h.term.auth.create("7", "Cashier 7", "cashier", "1357")
    h.login()
    h.press("MENU", "6", "3")          # Settings > Operators: another supervisor approves
    h.press("2", "ENTER", "3", "6", "9", "1", "ENTER")
    assert h.flow() == ("operators", "list"), h.text()
    assert "7 Cashier" in h.text()
    h.press("DOWN", "DOWN", "DOWN", "ENTER")       # + Add, 1, 2, 7
    assert h.flow() == ("operators", "edit"), h.text()
    h.press("2")                                   # disable 7
    assert "7 disabled" in h.text()
    h.press("ENTER", "CANCEL")
    assert "7 Cashier (off)" in h.text(), h.text()
    h.press("UP", "ENTER")                         # operator 2
    h.press("1", "1")                              # role: cashier
    assert "2: Cashier" in h.text(), h.text()
    h.press("ENTER", "CANCEL", "UP", "ENTER")      # operator 1, the last supervisor now
    h.press("2")
    assert "Keep 1 supervisor" in h.text(), h.text()
    h.press("ENTER", "1", "1")
    assert "Keep 1 supervisor" in h.text(), h.text()
    assert h.term.store.get_operator("1")["active"] is True
    # operator 2's PIN reset: a one-time PIN, changed at the next login
    h.press("ENTER", "CANCEL", "DOWN", "ENTER", "3")
    h.press("1", "1", "1", "1", "ENTER")
    assert "too easy" in h.text()
    h.press("4", "7", "1", "9", "ENTER", "4", "7", "1", "9", "ENTER")
    assert "2: PIN reset" in h.text(), h.text()
    events = [r[1] for r in h.term.store.audit_log(100)]
    for event in ("operator_disabled", "operator_role", "pin_reset"):
        assert event in events, events
    _logout(h)
    h.login("7", "1357")                           # disabled
    assert "Operator disabled" in h.text(), h.text()
    h.press("CANCEL")
    h.login("2", "4719")                           # the one-time PIN: a new one first
    assert h.flow() == ("pin_change", "new"), h.text()
    assert "One-time PIN" in h.text()
    h.press("4", "7", "1", "9", "ENTER")           # the same again: refused
    assert "PIN used before" in h.text(), h.text()
    h.press("3", "6", "9", "1", "ENTER")           # the one before it: refused too
    assert "PIN used before" in h.text(), h.text()
    h.press("5", "0", "3", "8", "ENTER", "5", "0", "3", "8", "ENTER")
    assert "PIN changed" in h.text()
    h.press("ENTER")
    assert h.flow() == ("idle", "idle") and h.term.operator["id"] == "2"
    assert _audit(h, "pin_changed")[0][3] == "reset"


def test_a_pin_too_old_is_changed_at_login(harness):
    h = harness()
    h.first_supervisor()
    now = epoch_of(h.term.system.utc_time())
    h.term.store.set_setting("op.1.pin_utc", str(now - 91 * 86400))
    h.login()
    assert h.flow() == ("pin_change", "new") and "PIN too old" in h.text(), h.text()
    h.press("CANCEL")                              # no new PIN, no session
    assert h.flow() == ("login", "id") and h.term.operator is None
    assert "A new PIN is needed" in h.text()
    h.login()
    h.press("1", "2", "3", "4", "ENTER")
    assert "too easy" in h.text()
    h.press("6", "0", "4", "8", "ENTER", "6", "0", "4", "8", "ENTER", "ENTER")
    assert h.flow() == ("idle", "idle")
    assert h.term.auth.pin_age_days("1") == 0


def test_changing_ones_own_pin_asks_the_old_one(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    h.press("MENU", "6", "2")
    assert h.flow() == ("pin_change", "old"), h.text()
    h.press("1", "1", "2", "2", "ENTER")
    assert "Wrong ID or PIN" in h.text()
    h.press("2", "5", "8", "0", "ENTER", "7", "0", "3", "9", "ENTER", "7", "0", "3", "9", "ENTER")
    assert "PIN changed" in h.text()
    h.press("ENTER", "CANCEL", "CANCEL")
    _logout(h)
    h.login("1", "7039")
    assert h.flow() == ("idle", "idle")


def test_a_supervisor_enrols_totp_in_settings_and_needs_it_for_an_export(harness):
    from tests.test_mfa import T0, Phone, _clock
    h = harness(mfa={"actions": ["export", "pin_reset"]})
    h.first_supervisor()
    h.login()
    clock = _clock(h, T0)
    h.press("MENU", "9", "3")                     # Offline queue > Export: not enrolled
    h.press("2", "5", "8", "0", "ENTER")
    assert h.flow() == ("mfa_check", "not_enrolled"), h.text()
    h.press("CANCEL")
    h.to_idle(tries=8)
    h.press("MENU", "6", "7")                     # Settings > Enrol TOTP: the QR code
    assert h.flow() == ("mfa_enrol", "qr"), h.text()
    phone = Phone(h.term.screen.qr)
    h.press("ENTER", *phone.code(clock[0]))
    h.press("ENTER")
    assert h.flow() == ("mfa_enrol", "done"), h.text()
    h.press("ENTER")
    h.to_idle(tries=8)
    clock[0] += 60
    h.press("MENU", "9", "3")
    h.press("2", "5", "8", "0", "ENTER")
    assert h.flow() == ("mfa_check", "code"), h.text()
    wrong = "%06d" % ((int(phone.code(clock[0])) + 1) % 1000000)
    h.press(*wrong)
    h.press("ENTER")
    assert h.flow() == ("mfa_check", "code"), h.text()     # refused, asked again
    h.press(*phone.code(clock[0]))
    h.press("ENTER")
    assert h.flow()[0] == "queue_export", h.text()           # the export goes on
    ok = _audit(h, "supervisor_ok")
    assert ok and ok[0][3].startswith("off_export")


def test_a_pin_reset_asks_the_approvers_totp(harness):
    from tests.test_mfa import T0, _clock
    h = harness(mfa={"actions": ["pin_reset"]})
    h.first_supervisor()
    h.term.auth.create("7", "Cashier 7", "cashier", "1357")
    h.login()
    _clock(h, T0)
    h.press("MENU", "6", "3", "2", "5", "8", "0", "ENTER")  # Operators
    h.press("DOWN", "DOWN", "ENTER", "3")                    # 7 > Reset PIN
    assert h.flow() == ("mfa_check", "not_enrolled"), h.text()
    h.press("CANCEL")
    assert h.flow() == ("operators", "edit"), h.text()       # nothing reset
    assert not _audit(h, "pin_reset")


def test_the_only_supervisor_may_add_the_second_one(harness):
    h = harness(auth=SECOND, mfa={"actions": []})
    h.first_supervisor()
    h.login()
    h.press("MENU", "6", "3")                 # no other supervisor: its own PIN is asked
    assert h.flow() == ("supervisor", "pin"), h.text()
    h.press("2", "5", "8", "0", "ENTER")
    assert h.flow() == ("operators", "list"), h.text()
    h.press("ENTER", "2", "2")                # + Add: a supervisor, ID 2
    h.press("ENTER", "3", "6", "9", "1", "ENTER", "3", "6", "9", "1", "ENTER")
    assert "Created: ID 2" in h.text(), h.text()
    assert _audit(h, "supervisor_ok")[0][3] == "op_manage sole supervisor"
    h.to_idle(tries=8)
    h.press("MENU", "6", "3")                 # now there is another: it must approve
    assert h.flow() == ("supervisor", "id"), h.text()


def test_settings_show_the_limits_to_a_supervisor_and_not_to_a_cashier(harness):
    h = harness()
    h.first_supervisor()
    h.term.config["limits"]["per_payment"] = 50000
    h.login()
    h.press("MENU", "6", "8")                    # Settings > Limits (the last entry)
    assert "Per payment" in h.text() and "Daily count" in h.text(), h.text()
    assert "500.00" in h.text(), h.text()
    h.to_idle(tries=6)
    h.term.auth.create("7", "Cashier 7", "cashier", "1357")
    _logout(h)
    h.login("7", "1357")
    h.press("MENU", "6")
    assert "Limits" not in h.text(), h.text()


def test_a_cashier_may_not_read_the_anomalies_report(harness):
    h = harness()
    h.first_supervisor()
    h.term.auth.create("7", "Cashier 7", "cashier", "1357")
    h.login("7", "1357")
    h.press("MENU", "5", "6")                    # Reports > Anomalies
    assert "Not for your role" in h.text(), h.text()
    assert h.flow() == ("notice", "show")
    h.press("ENTER")
    assert h.flow() == ("reports", "menu"), h.text()


def test_an_operator_added_by_a_supervisor_chooses_a_pin_at_first_login(harness):
    h = harness(mfa={"actions": []})
    h.first_supervisor()
    h.login()
    h.press("MENU", "6", "3", "2", "5", "8", "0", "ENTER")     # Operators (the only supervisor)
    h.press("ENTER", "1", "7", "ENTER", "1", "3", "5", "7", "ENTER", "1", "3", "5", "7", "ENTER")
    assert "Created: ID 7" in h.text(), h.text()
    _logout(h)
    h.login("7", "1357")
    assert h.flow() == ("pin_change", "new") and "One-time PIN" in h.text(), h.text()
    h.press("1", "3", "5", "7", "ENTER")                       # the supervisor's: refused
    assert "PIN used before" in h.text(), h.text()
    h.press("8", "0", "2", "4", "ENTER", "8", "0", "2", "4", "ENTER", "ENTER")
    assert h.flow() == ("idle", "idle") and h.term.operator["id"] == "7"
