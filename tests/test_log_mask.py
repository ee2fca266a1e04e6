"""Card numbers never reach a log (DESIGN.md, Card security): drivers/logmask.py's
filter on the root handlers masks anything that looks like one (13-19 digits, alone or
grouped by spaces or dashes, passing Luhn) in the message, its args and exception
text, and leaves order numbers that fail Luhn, STANs and amounts alone."""
import io
import logging
import os
import subprocess
import sys

import pytest

from drivers import logmask
from drivers.logmask import PanMaskFilter, mask_pans

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# published test card numbers (Visa, Mastercard, UnionPay, Amex, Discover, JCB, Diners,
# Maestro 19)
TEST_PANS = ["4111111111111111", "5555555555554444", "6212345678901232", "378282246310005",
             "6011111111111117", "3530111333300000", "30569309025904", "6759649826438453",
             "4000000000000002", "6250941006528599", "4222222222222", "6304000000000000018"]


@pytest.fixture
def logged():
    """A logger whose records go through the mask to a string, as the root handler's."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(PanMaskFilter())
    log = logging.getLogger("handpos.test_log_mask")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, stream
    log.removeHandler(handler)


@pytest.mark.parametrize("pan", TEST_PANS)
def test_test_pans_masked_in_message_and_args(logged, pan):
    log, stream = logged
    log.info("card %s approved", pan)
    log.warning("swiped " + pan + " twice")
    log.error("%s", {"pan": pan, "stan": "000123"})
    out = stream.getvalue()
    assert pan not in out
    assert pan[-4:] in out and pan[:6] in out           # first six, last four kept
    assert "000123" in out


@pytest.mark.parametrize("shape", ["4111 1111 1111 1111", "4111-1111-1111-1111",
                                   "5555 5555 5555 4444", "3782 822463 10005",
                                   "6212-3456-7890-1232"])
def test_grouped_numbers_masked(shape):
    out = mask_pans("card %s end" % shape)
    assert "".join(c for c in out if c.isdigit()) == (
        "".join(c for c in shape if c.isdigit())[:6] + "".join(c for c in shape
                                                               if c.isdigit())[-4:])
    assert out.startswith("card ") and out.endswith(" end")
    assert mask_pans("4111 1111 1111 1111") == "4111 11** **** 1111"


def test_order_ids_stans_and_amounts_left_alone(logged):
    log, stream = logged
    order = "1234567812345678"                  # 16 digits, fails Luhn: an order number
    assert not __import__("firmware.cards.magstripe", fromlist=["luhn_ok"]).luhn_ok(order)
    line = "order %s stan 000123 rrn 612345678901 amount 12345 EUR 123.45 batch 7 " \
           "at 2026-12-01T10:45:00Z tid TERM0001"
    log.info(line, order)
    assert stream.getvalue().strip() == "INFO " + line % order
    assert mask_pans("1234 5678 1234 5678") == "1234 5678 1234 5678"


def test_a_pan_beside_other_numbers_is_found():
    # the run goes on into the amount, or starts with a count: the card number is found
    assert mask_pans("4111111111111111 1000") == "411111******1111 1000"
    assert mask_pans("3 4111 1111 1111 1111 end") == "3 4111 11** **** 1111 end"
    # which groups are the card cannot be told here (4111...1111 42 passes Luhn too):
    # every candidate is masked, so the card shows no more than its first six
    out = mask_pans("3 4111 1111 1111 1111 42")
    assert out.startswith("3 4111 11** **** ") and out.endswith(" 42")
    assert mask_pans(";4111111111111111=25121011234567890?") == \
        ";411111******1111=25121011234567890?"
    assert mask_pans("B4111111111111111^TEST/CARD^2512") == "B411111******1111^TEST/CARD^2512"
    assert mask_pans("12 and 4111111111111111") == "12 and 411111******1111"


def test_too_short_and_too_long_left_alone():
    assert mask_pans("424242424242") == "424242424242"          # 12 digits
    twenty = "41111111111111111110"
    assert mask_pans(twenty) == twenty


def test_exception_text_masked(logged):
    log, stream = logged
    try:
        raise ValueError("bad card 5555555555554444")
    except ValueError:
        log.exception("declined %s", "6212345678901232")
    out = stream.getvalue()
    assert "5555555555554444" not in out and "6212345678901232" not in out
    assert "555555******4444" in out and "Traceback" in out


def test_bad_format_string_still_masked(logged):
    log, stream = logged
    log.info("card %s %s", "4111111111111111")          # one arg short
    assert "4111111111111111" not in stream.getvalue()


def test_install_puts_the_filter_on_every_root_handler():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.handlers = []
        stream = io.StringIO()
        mask = logmask.install(stream=stream)
        again = logmask.install()
        assert mask is again
        assert [f for f in root.handlers[0].filters if isinstance(f, PanMaskFilter)] == [mask]
        extra = logging.StreamHandler(io.StringIO())
        root.addHandler(extra)
        logmask.install()
        assert mask in extra.filters
        logging.getLogger("handpos.pcsc").warning("card %s", "4111111111111111")
        assert "411111******1111" in stream.getvalue()
        assert "4111111111111111" not in extra.stream.getvalue()
    finally:
        root.handlers, root.level = saved


def test_the_handpos_command_installs_it():
    """Through the real `handpos` entry: a record logged by a driver after main() has
    started passes the mask (the root handler it installs)."""
    code = ("import logging, sys\n"
            "from tools import cli\n"
            "from drivers import logmask\n"
            "orig = logmask.install\n"
            "def install(*a, **k):\n"
            "    m = orig(*a, **k)\n"
            "    logging.getLogger('handpos.msr').warning('swipe %s', '4111111111111111')\n"
            "    return m\n"
            "logmask.install = install\n"
            "sys.exit(cli.main(['check-config', '/nonexistent.toml']))\n")
    got = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert "swipe 411111******1111" in got.stderr, got.stderr
    assert "4111111111111111" not in got.stderr
