"""Events the core reacts to. A flow sees nothing of the world but these."""

KEY = "key"                      # key=<name from firmware.core.keys>
TIMEOUT = "timeout"              # the current state's time ran out
PRINTER = "printer"              # state=ok|paper_out|paper_near_end|cover_open|offline|error
PRINTED = "printed"              # job=<id>: the last byte of a job left for the printer
DEVICE_LOST = "device_lost"      # device=<alias>, reason=<text>
LINK = "link"                    # state=up|down|none
TICK = "tick"                    # the wall-clock minute changed (idle screen clock)
SCAN = "scan"                    # code=<text as the scanner read it>, source=hid|serial
SCAN_ERROR = "scan_error"        # reason=garbage|too_long|cut_short: nothing usable came


class Event:
    def __init__(self, kind, **data):
        self.kind = kind
        self.data = data

    def get(self, name, default=None):
        return self.data.get(name, default)

    def __repr__(self):
        return "Event(%s, %r)" % (self.kind, self.data)


def key(name):
    return Event(KEY, key=name)
