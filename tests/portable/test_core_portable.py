"""The core's logic on both Pythons: catalogue, money, config, PIN hashing, flows."""
from firmware.security import auth
from firmware.core import config, events, keys
from firmware.ui import i18n
from firmware.core.money import format_amount
from firmware.core.reactor import Reactor
from firmware.core.store import MemoryStore
from firmware.payments.journal import MemoryJournal
from firmware.payments.service import Payments
from firmware.terminal import Terminal
from tests.portable.core_stubs import FakeClock, FixedSystem, QuietPoller


def test_catalogues_are_complete_and_fall_back_visibly():
    assert i18n.missing("zh") == []
    t = i18n.Translator("zh")
    assert t("menu_sale") == "消费"
    assert t("op_created", id="7") == "已创建: 7"
    assert t("no_such_message_id") == "no_such_message_id"
    t.set_language("en")
    assert t("menu_sale") == "Sale"


def test_money_formats_minor_units_by_exponent():
    assert format_amount(1250, "USD") == "12.50"
    assert format_amount(5, "EUR") == "0.05"
    assert format_amount(500, "JPY") == "500"
    assert format_amount(1234, "KWD") == "1.234"
    assert format_amount(-1250, "CNY", with_code=True) == "CNY -12.50"


def test_config_names_key_value_and_rule():
    cfg, errors = config.validate({"ui": {"language": "de"}, "terminal": {"id": "12"}})
    assert len(errors) == 2
    assert 'ui.language = "de": must be one of: en, zh' in errors
    assert cfg["ui"]["language"] == "en"


def test_portable_pbkdf2_matches_rfc_7914_vector_and_hashlib():
    # RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1)
    expected = "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
    got = auth.pbkdf2_sha256_portable(b"passwd", b"salt", 1)
    assert "".join("%02x" % b for b in got) == expected
    assert auth.pbkdf2_sha256(b"1234", b"s" * 16, 50) == auth.pbkdf2_sha256_portable(b"1234", b"s" * 16, 50)


def test_weak_pins_and_formats():
    assert auth.weak_pin("1111") and auth.weak_pin("1234") and auth.weak_pin("9876")
    assert not auth.weak_pin("2580")
    assert auth.valid_pin("2580") and not auth.valid_pin("258") and not auth.valid_pin("25a0")
    assert auth.valid_id("123456") and not auth.valid_id("1234567") and not auth.valid_id("")


ALL_OK = {"display": (True, "ok"), "keypad": (True, "ok"), "buzzer": (True, "ok"),
          "led": (True, "ok"), "storage": (True, "ok"), "printer": (True, "ok")}


def _terminal(clock, selftests=ALL_OK):
    reactor = Reactor(clock=clock, poller=QuietPoller())
    term = Terminal(reactor, config.defaults(), MemoryStore(), FixedSystem(), auth_iterations=20,
                    selftests=selftests)
    term.payments = Payments(term, MemoryJournal())     # cash only: no host, no reader
    return term, reactor


def test_boot_with_failed_parts_names_them_and_waits_then_goes_on():
    clock = FakeClock()
    term, reactor = _terminal(clock, selftests={"display": (True, "ok")})
    term.start()
    clock.now += 1600
    reactor.run_once(0)
    text = term.screen.text()
    assert "Keypad: FAIL" in text and "Check keypad cable" in text
    assert "Printer: FAIL" in text                  # no printer at all
    assert "Display: FAIL" not in text
    clock.now += 10000
    reactor.run_once(0)
    assert term.current().NAME == "boot"            # still showing why
    clock.now += 10001
    reactor.run_once(0)
    assert "Welcome" in term.screen.text()          # and then goes on with what works


def _keys(term, reactor, *names):
    for name in names:
        term.on_key(name)
        reactor.run_once(0)


def test_whole_first_run_and_login_on_the_core_alone():
    clock = FakeClock()
    term, reactor = _terminal(clock)
    term.start()
    reactor.run_once(0)
    assert "Self-test" in term.screen.text()
    clock.now += 1600
    reactor.run_once(0)
    assert "Welcome" in term.screen.text()
    _keys(term, reactor, keys.ENTER, "4", "2", keys.ENTER, "2", "5", "8", "0", keys.ENTER,
          "2", "5", "8", "0", keys.ENTER)
    assert "Created: ID 42" in term.screen.text()
    _keys(term, reactor, keys.ENTER, "4", "2", keys.ENTER, "2", "5", "8", "0", keys.ENTER)
    assert term.operator["id"] == "42"
    assert term.current().NAME == "idle"
    assert term.screen.big == "09:30"
    assert "09:30?" in term.screen.text()          # unsynchronised clock is marked
    assert "B64" in term.screen.text()
    _keys(term, reactor, keys.MENU, "6", keys.ENTER)
    assert term.t.lang == "zh"


def test_every_state_of_every_flow_has_a_timeout_or_a_parent():
    from firmware.flows import boot, diagnostics, home, idle, login, notice, operator, settings, setup
    from firmware.flows import operators, pin_change
    # a child flow runs above these (its own states time out)
    waiting = {("setup", "creating"), ("idle", "menu"), ("login", "change"),
               ("operators", "supervisor"), ("operators", "adding"), ("operators", "mfa")}
    for mod, cls in ((boot, "BootFlow"), (setup, "SetupFlow"), (login, "LoginFlow"),
                     (idle, "IdleFlow"), (home, "HomeFlow"), (settings, "SettingsFlow"),
                     (diagnostics, "DiagnosticsFlow"), (notice, "NoticeFlow"),
                     (operator, "NewOperatorFlow"), (operators, "OperatorsFlow"),
                     (pin_change, "PinChangeFlow")):
        flow = getattr(mod, cls)
        for state, spec in flow.STATES.items():
            if (flow.NAME, state) in waiting:
                continue
            timeout = spec.get("timeout", flow.DEFAULT_TIMEOUT)
            assert timeout, "%s.%s has no timeout" % (flow.NAME, state)
            for trigger, handler in spec.get("on", {}).items():
                assert hasattr(flow, handler), "%s.%s: no handler %s" % (flow.NAME, state, handler)


class Lcg:
    def __init__(self, seed):
        self.x = seed

    def below(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n


def test_key_storm_never_crashes_a_flow():
    clock = FakeClock()
    term, reactor = _terminal(clock)
    errors = []
    reactor.on_error = errors.append
    term.start()
    clock.now += 1600
    reactor.run_once(0)
    _keys(term, reactor, keys.ENTER, "1", keys.ENTER, "2", "5", "8", "0", keys.ENTER,
          "2", "5", "8", "0", keys.ENTER, keys.ENTER)
    rnd = Lcg(7)        # MicroPython's random has no Random(seed): same keys on both
    pool = list(keys.ALL) + ["NOT_A_KEY"]
    for i in range(3000):
        if term.operator is None and rnd.below(20) == 0:
            _keys(term, reactor, "1", keys.ENTER, "2", "5", "8", "0", keys.ENTER)
        term.on_key(pool[rnd.below(len(pool))])
        if i % 97 == 0:
            clock.now += 61000        # let timeouts fire too
        reactor.run_once(0)
        assert term.screen is not None
        assert term.flows, "no flow left after key %d" % i
    assert errors == []
    # a flow a person can be in with keys alone (the card reader is not touched)
    assert term.current().NAME in ("idle", "login", "home", "settings", "diagnostics",
                                   "new_operator", "notice", "sale", "offline", "upload",
                                   "queue_records", "supervisor", "pick", "void",
                                   "refund_start", "refund", "queue_export", "cart",
                                   # MENU > Reports and what it opens (issue 14)
                                   "reports", "shift", "shift_open", "shift_move",
                                   "shift_close", "x_report", "last_z", "journal",
                                   "settle",
                                   # MENU > Members and what it opens (issue 16)
                                   "members_menu", "member", "enrol", "member_erase",
                                   # the cart's MENU: its Member and Redeem entries and
                                   # Stock > Promotions (issue 16)
                                   "cart_menu", "redeem", "promotions")


def test_device_lost_event_shows_what_to_check():
    clock = FakeClock()
    term, reactor = _terminal(clock)
    term.start()
    term.on_device_lost("keypad", "ENODEV")       # during the self-test: it joins the list
    reactor.run_once(0)
    assert "Keypad: FAIL" in term.screen.text()
    clock.now += 20001
    reactor.run_once(0)
    term.on_key(keys.ENTER)
    reactor.run_once(0)
    term.on_device_lost("printer", "ENODEV")      # later: a notice over whatever runs
    reactor.run_once(0)
    assert "Device lost" in term.screen.text()
    assert "Check printer power" in term.screen.text()
    assert term.printer_state == "missing"
    ev = events.Event(events.DEVICE_LOST, device="printer")
    assert ev.get("device") == "printer"


def test_key_storm_started_in_every_flow():
    from firmware.flows import boot, diagnostics, home, idle, login, notice, operator, settings, setup
    starts = (lambda t: boot.BootFlow(t), lambda t: setup.SetupFlow(t), lambda t: login.LoginFlow(t),
              lambda t: idle.IdleFlow(t), lambda t: home.HomeFlow(t),
              lambda t: settings.SettingsFlow(t), lambda t: diagnostics.DiagnosticsFlow(t),
              lambda t: operator.NewOperatorFlow(t),
              lambda t: notice.NoticeFlow(t, "T", ["line"]))
    pool = list(keys.ALL) + ["NOT_A_KEY", ""]
    for n, make in enumerate(starts):
        clock = FakeClock()
        term, reactor = _terminal(clock)
        errors = []
        reactor.on_error = errors.append
        term.auth.create("1", "S", "supervisor", "2580")
        term.login(term.store.get_operator("1"))
        term.replace_all(make(term))
        rnd = Lcg(n + 1)
        for i in range(600):
            term.on_key(pool[rnd.below(len(pool))])
            if rnd.below(50) == 0:
                clock.now += 30000 + rnd.below(40000)
            reactor.run_once(0)
            assert term.flows and term.screen is not None
        assert errors == [], "flow %d: %r" % (n, errors)
