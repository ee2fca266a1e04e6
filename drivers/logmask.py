"""Card numbers kept out of the logs (DESIGN.md, Card security): a logging.Filter on
every root handler that masks anything looking like a card number in each record.

"Looks like a card number": 13 to 19 digits in a run, alone or in groups split by a
single space or dash (4111 1111 1111 1111, 4111-1111-1111-1111), that pass the Luhn
check. Such a number keeps its first six and last four digits, the rest become '*'
(what DESIGN.md allows anywhere but a receipt; where a count or an amount runs into
it, a few of their digits may be hidden too). A 16-digit order number that fails
Luhn, a STAN, an amount or a time stays as it is: one in ten random numbers of card
length passes Luhn by chance and is masked too, which costs a log reader little.

The message and its args are both looked at: the record is formatted once (getMessage),
masked, and kept formatted with no args, so a handler's formatter cannot bring a
number back from an arg. Exception text (a traceback's message) is masked as well.
"""
import logging
import re

from firmware.cards.magstripe import luhn_ok

# a run of digits, each group split from the next by at most one space or dash
_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_GROUP = re.compile(r"[0-9]+")
PAN_MIN, PAN_MAX = 13, 19
MAX_GROUPS = 64                 # a run of more groups is looked at in its first 64


def _mask_run(run):
    """A run of digit groups with every card number in it masked. A run of several
    groups may hold a number with a count before it or an amount after it, and which
    groups make the card number cannot always be told (a count and the first groups may
    pass Luhn too): every span of consecutive groups of 13-19 digits that passes Luhn
    has its digits hidden but its first six and last four, so the real number shows no
    more than that, whichever span it is."""
    groups = [[m.start() + k for k in range(m.end() - m.start())]
              for m in _GROUP.finditer(run)][:MAX_GROUPS]
    hide = set()
    for i in range(len(groups)):
        where = []
        for j in range(i, len(groups)):
            where = where + groups[j]
            if len(where) > PAN_MAX:
                break
            if len(where) >= PAN_MIN and luhn_ok("".join(run[k] for k in where)):
                hide.update(where[6:-4])
    if not hide:
        return run
    return "".join("*" if k in hide else ch for k, ch in enumerate(run))


def mask_pans(text):
    """text with every card number in it masked (see the module's docstring)."""
    if not isinstance(text, str) or not any(ch.isdigit() for ch in text):
        return text
    return _RUN.sub(lambda m: _mask_run(m.group(0)), text)


class PanMaskFilter(logging.Filter):
    """Masks card numbers in every record it sees; never drops one."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:           # a bad format string: what it would have shown
            message = "%s %r" % (record.msg, record.args)
        masked = mask_pans(message)
        if masked != message or record.args:
            record.msg = masked
            record.args = None
        if record.exc_info and not record.exc_text:
            # formatted here, masked, and kept: the formatter uses exc_text as it is
            record.exc_text = mask_pans(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask_pans(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_pans(record.stack_info)
        return True


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def install(level=logging.WARNING, stream=None):
    """Logging for the terminal and its tools: a handler on the root logger (standard
    error, which journald keeps on the device; WARNING and up, as Python's own last
    resort handler printed before, so the simulator's screen is not written over)
    unless one is there already, and the
    mask on every root handler. Returns the filter. Called again, it adds nothing
    twice; a handler added later needs install() again (or the filter itself)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
        root.setLevel(level)
    mask = None
    for handler in root.handlers:
        for f in handler.filters:
            if isinstance(f, PanMaskFilter):
                mask = f
    mask = mask or PanMaskFilter()
    for handler in root.handlers:
        if mask not in handler.filters:
            handler.addFilter(mask)
    return mask
