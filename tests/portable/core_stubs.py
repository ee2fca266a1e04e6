"""What the portable tests put under a Terminal instead of a board: a clock the test
moves, a poller with nothing to poll, a system with a fixed time. Plain classes, so the
same stubs run under CPython and MicroPython."""


class FakeClock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


class QuietPoller:
    def register(self, fd, events):
        pass

    def unregister(self, fd):
        pass

    def modify(self, fd, events):
        pass

    def poll(self, timeout):
        return []


class FixedSystem:
    """local and utc: (y, m, d, h, mi, s); the offset between them is utc_offset_min."""

    def __init__(self, local=(2026, 11, 21, 9, 30, 0), utc=(2026, 11, 21, 1, 30, 0),
                 offset_min=480, synced=False, battery=(64, False)):
        self.local = local
        self.utc = utc
        self.offset_min = offset_min
        self.synced = synced
        self.batt = battery

    def local_time(self):
        return self.local

    def utc_time(self):
        return self.utc

    def utc_offset_min(self):
        return self.offset_min

    def clock_synced(self):
        return self.synced

    def battery(self):
        return self.batt

    def random_bytes(self, n):
        return b"\x07" * n
