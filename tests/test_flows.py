"""The flows a person walks through, on the whole simulated board."""


def test_first_run_creates_supervisor_then_login_menu_and_chinese(harness):
    h = harness()
    h.boot()
    assert "Welcome" in h.wait_for("Create a supervisor")
    h.press("ENTER")
    assert "New ID, 1-6 digits" in h.text()
    h.press("1", "ENTER")
    assert "New PIN" in h.text()
    h.press("2", "5", "8", "0", "ENTER")
    assert "PIN again" in h.text()
    h.press("2", "5", "8")
    assert "258" not in h.text()                  # the PIN shows as stars only
    assert "***" in h.text()
    h.press("0", "ENTER")
    assert "Created: ID 1" in h.text()
    h.press("ENTER")
    h.login("1", "2580")
    assert h.flow() == ("idle", "idle")
    assert "Supervisor 1" in h.text()
    h.press("MENU")
    assert "Menu" in h.text() and "Sale" in h.text()
    h.press("6")                                  # Settings
    assert h.flow() == ("settings", "menu")
    assert "Operators" in h.text() and "Change my PIN" in h.text()
    h.press("ENTER")                              # first entry: language -> 中文
    assert "中文" in h.text()
    h.press("ENTER")
    assert "设置" in h.text()                      # the Settings menu, now in Chinese
    h.press("CANCEL")
    assert "主菜单" in h.text() and "消费" in h.text()


def test_language_choice_survives_a_restart(harness, tmp_path):
    h = harness()
    h.first_supervisor()
    h.press("F2")                                  # on the login screen: 中文
    assert "操作员号" in h.text()
    h.close()
    h2 = harness()
    h2.boot()
    assert "操作员号" in h2.wait_for("操作员号")


def test_pin_rules_on_creation(harness):
    h = harness()
    h.boot()
    h.wait_for("Welcome")
    h.press("ENTER", "1", "2", "3", "4", "5", "6", "7")   # a 7th digit is refused
    assert "123456" in h.text() and "1234567" not in h.text()
    h.press("ENTER")
    h.press("1", "2", "3", "ENTER")
    assert "PIN: 4 to 8 digits" in h.text()
    h.press("1", "2", "3", "4", "ENTER")
    assert "too easy" in h.text()
    h.press("7", "7", "7", "7", "ENTER")
    assert "too easy" in h.text()
    h.press("2", "5", "8", "0", "ENTER", "2", "5", "8", "1", "ENTER")
    assert "PINs differ" in h.text()
    assert h.flow() == ("new_operator", "pin")
    h.press("2", "5", "8", "0", "ENTER", "2", "5", "8", "0", "ENTER")
    assert "Created: ID 123456" in h.text()


def test_wrong_pin_five_times_locks_the_id_for_15_minutes(harness):
    h = harness()
    h.first_supervisor()
    for _ in range(4):
        h.press("1", "ENTER", "9", "9", "9", "1", "ENTER")
        assert "Wrong ID or PIN" in h.text()
    h.press("1", "ENTER", "9", "9", "9", "1", "ENTER")
    assert "ID 1 locked" in h.text()
    assert "Try again in 15 min" in h.text()
    # even the right PIN is refused while locked
    h.press("CANCEL", "1", "ENTER")
    assert "locked" in h.text()
    h.advance(14 * 60000)
    h.press("CANCEL", "1", "ENTER")
    assert "locked" in h.text() and "Try again in 60 s" in h.text(), h.text()
    h.advance(61000)
    h.press("CANCEL")
    h.login("1", "2580")
    assert h.flow() == ("idle", "idle")


def test_unknown_id_reads_like_a_wrong_pin(harness):
    h = harness()
    h.first_supervisor()
    h.press("4", "2", "ENTER", "2", "5", "8", "0", "ENTER")
    assert "Wrong ID or PIN" in h.text()


def _add_operator(h, role_key, op_id, pin):
    h.add_operator(role_key, op_id, pin)


def test_roles_decide_what_the_menu_opens(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    _add_operator(h, "1", "7", "1357")            # a cashier
    h.press("MENU", "8")                           # Log out
    h.login("7", "1357")
    assert "Cashier 7" in h.text()
    h.press("MENU", "7")
    assert "Not for your role" in h.text()
    h.press("ENTER", "5")
    assert "Reports" in h.text() and "Shift" in h.text(), h.text()   # a cashier's reports
    h.press("CANCEL")
    h.press("6")                                   # a cashier sees no operator
    assert "Operators" not in h.text() and "Change my PIN" in h.text(), h.text()


def test_technician_reaches_diagnostics(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    _add_operator(h, "3", "9", "4826")
    h.press("MENU", "8")
    h.login("9", "4826")
    h.press("MENU", "7")
    assert "Diagnostics" in h.text()
    h.press("1")                    # the printer is asked afresh: "checking", then OK
    assert "Display: OK" in h.text()
    h.wait_for("Printer: OK")


def test_menu_times_out_to_idle_and_idle_logs_out(harness):
    h = harness(idle_logout_s=120, menu_timeout_s=20)
    h.first_supervisor()
    h.login()
    h.press("MENU")
    h.advance(21000)
    assert h.flow() == ("idle", "idle")
    h.advance(120000)
    assert h.flow() == ("login", "id")
    assert "Operator ID" in h.text()


def test_keys_keep_the_session_alive(harness):
    h = harness(idle_logout_s=60, menu_timeout_s=600)
    h.first_supervisor()
    h.login()
    h.press("MENU")
    for _ in range(4):
        h.advance(40000)
        h.press("DOWN")
    assert h.term.operator is not None
    h.advance(61000)
    assert h.term.operator is None


def test_keypad_test_shows_each_key_and_double_cancel_leaves(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    h.press("MENU", "7", "3")
    assert "Press each key" in h.text()
    h.press("F3")
    assert "F3" in h.text()
    h.press("CANCEL")
    assert "Keypad test" in h.text()
    h.press("CANCEL")
    assert "Diagnostics" in h.text() and h.flow() == ("diagnostics", "menu")


def test_printer_test_page_prints_and_paper_out_is_told(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    h.press("MENU", "7", "2")
    h.run(3000, until=lambda: "Test page printed" in h.text())
    assert "Test page printed" in h.text()
    h.run(3000, until=lambda: h.sim.vprinter.receipts)     # the paper end reads it
    assert len(h.sim.vprinter.receipts) == 1
    assert "中文打印测试" in h.sim.vprinter.receipts[0].text()
    h.press("ENTER")
    h.sim.vprinter.set_paper(False)
    h.press("2")
    h.run(3000, until=lambda: "no paper" in h.text())
    assert "Printer: no paper" in h.text()
    h.sim.vprinter.set_paper(True)
    h.run(5000, until=lambda: len(h.sim.vprinter.receipts) == 2)
    assert len(h.sim.vprinter.receipts) == 2


def test_keypad_unplugged_is_named_on_screen(harness):
    h = harness()
    h.first_supervisor()
    h.sim.keypad_device.close_writer()
    h.run(2000, until=lambda: "Device lost" in h.text())
    assert "Keypad" in h.text() and "Check keypad cable" in h.text()
    assert h.reactor.errors == 0


def test_a_late_printer_answer_does_not_draw_the_self_test_over_the_next_screen(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    h.press("MENU", "7", "1")                     # Diagnostics > Self-test: asks the printer
    assert "Self-test" in h.text() or "Printer" in h.text()
    h.press("ENTER", "6")                         # back to the menu, then System info
    assert "handpos" in h.text()
    h.run(4000)                                   # the printer's answer, or its time, passes
    assert "handpos" in h.text() and "Printer:" not in h.text()


def test_a_menu_does_not_time_out_under_the_flow_it_opened(harness):
    """Settings open from the home menu for longer than the menu's own time: the home
    menu is still under it and CANCEL comes back to it (it used to end under Settings,
    which then went back to the idle screen)."""
    h = harness()
    h.first_supervisor()
    h.login()
    h.press("MENU", "6")
    assert h.flow() == ("settings", "menu")
    for _ in range(3):                            # 50 s steps: keys keep Settings alive
        h.advance(50000)
        h.press("DOWN")
    assert h.flow() == ("settings", "menu"), h.text()
    assert [f.NAME for f in h.term.flows][-2:] == ["home", "settings"]
    h.press("CANCEL")
    assert h.flow() == ("home", "menu"), h.text()
