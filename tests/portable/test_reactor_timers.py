"""The reactor's timers and posted callbacks, with an injected clock and poller.

The poller records the timeout the loop would block for: that the timeout equals the
time to the next deadline is what shows the loop sleeps instead of polling.
"""
from firmware.core.reactor import Reactor


class FakeClock:
    def __init__(self, now=1000):
        self.now = now

    def __call__(self):
        return self.now


class RecordingPoller:
    """select.poll's interface; nothing is ever ready."""

    def __init__(self):
        self.timeouts = []
        self.registered = {}

    def register(self, fd, events=None):
        self.registered[fd] = events

    def modify(self, fd, events):
        self.registered[fd] = events

    def unregister(self, fd):
        self.registered.pop(fd, None)

    def poll(self, timeout=-1):
        self.timeouts.append(timeout)
        return []


def _reactor():
    clock = FakeClock()
    poller = RecordingPoller()
    reactor = Reactor(clock=clock, poller=poller)
    return reactor, clock, poller


def test_timers_fire_in_deadline_order_then_in_order_of_arming():
    reactor, clock, poller = _reactor()
    try:
        fired = []
        reactor.call_later(30, fired.append, "c")
        reactor.call_later(10, fired.append, "a")
        reactor.call_later(20, fired.append, "b1")
        reactor.call_later(20, fired.append, "b2")
        reactor.run_once()
        assert fired == []
        clock.now += 20
        reactor.run_once()
        assert fired == ["a", "b1", "b2"]
        clock.now += 10
        reactor.run_once()
        assert fired == ["a", "b1", "b2", "c"]
        reactor.run_once(0)
        assert fired == ["a", "b1", "b2", "c"]     # each fires once
    finally:
        reactor.close()


def test_a_timer_passes_its_arguments():
    reactor, clock, poller = _reactor()
    try:
        got = []
        reactor.call_later(5, lambda a, b: got.append((a, b)), 1, "two")
        clock.now += 5
        reactor.run_once()
        assert got == [(1, "two")]
    finally:
        reactor.close()


def test_cancelled_timer_does_not_fire_and_leaves_no_deadline():
    reactor, clock, poller = _reactor()
    try:
        fired = []
        keep = reactor.call_later(10, fired.append, "keep")
        drop = reactor.call_later(5, fired.append, "drop")
        drop.cancel()
        assert reactor.next_timeout() == 10     # the cancelled one no longer counts
        keep.cancel()
        assert reactor.next_timeout() == -1
        clock.now += 100
        reactor.run_once()
        assert fired == []
    finally:
        reactor.close()


def test_a_callback_can_cancel_a_timer_due_at_the_same_time():
    reactor, clock, poller = _reactor()
    try:
        fired = []
        later = []
        reactor.call_later(10, lambda: (fired.append("first"), later[0].cancel()))
        later.append(reactor.call_later(10, fired.append, "second"))
        clock.now += 10
        reactor.run_once()
        assert fired == ["first"]
    finally:
        reactor.close()


def test_next_timeout_is_minus_one_without_timers():
    reactor, clock, poller = _reactor()
    try:
        assert reactor.next_timeout() == -1
        reactor.run_once()
        assert poller.timeouts == [-1]          # block until a descriptor is ready
    finally:
        reactor.close()


def test_poll_blocks_exactly_until_the_next_deadline():
    reactor, clock, poller = _reactor()
    try:
        fired = []
        reactor.call_later(250, fired.append, "t")
        reactor.call_later(900, fired.append, "u")
        assert reactor.next_timeout() == 250
        clock.now += 100
        reactor.run_once()
        assert poller.timeouts[-1] == 150
        assert fired == []
        clock.now += 150
        reactor.run_once()
        assert poller.timeouts[-1] == 0 and fired == ["t"]
        reactor.run_once()
        assert poller.timeouts[-1] == 650       # now the later timer
        clock.now += 1000
        reactor.run_once()
        assert poller.timeouts[-1] == 0         # overdue: no negative, no blocking
        assert fired == ["t", "u"]
        reactor.run_once()
        assert poller.timeouts[-1] == -1
        assert len(poller.timeouts) == 5        # one poll per turn, no spinning
    finally:
        reactor.close()


def test_max_wait_caps_the_poll_timeout():
    reactor, clock, poller = _reactor()
    try:
        reactor.run_once(40)
        assert poller.timeouts[-1] == 40
        reactor.call_later(25, lambda: None)
        reactor.run_once(40)
        assert poller.timeouts[-1] == 25
    finally:
        reactor.close()


def test_post_runs_on_the_next_turn_without_waiting():
    reactor, clock, poller = _reactor()
    try:
        got = []
        reactor.call_later(5000, got.append, "timer")
        reactor.post(got.append, "posted")
        assert got == []
        assert reactor.next_timeout() == 0      # a posted callback must not wait 5 s
        reactor.run_once()
        assert poller.timeouts[-1] == 0
        assert got == ["posted"]
        reactor.run_once()
        assert got == ["posted"]                # once only
        assert poller.timeouts[-1] == 5000
    finally:
        reactor.close()


def test_a_failing_callback_is_counted_and_the_others_still_run():
    reactor, clock, poller = _reactor()
    try:
        seen = []
        ran = []

        def broken_timer():
            raise ValueError("timer")

        def broken_post():
            raise KeyError("post")

        reactor.on_error = seen.append
        reactor.call_later(10, broken_timer)
        reactor.call_later(10, ran.append, "timer after")
        reactor.post(broken_post)
        reactor.post(ran.append, "post after")
        clock.now += 10
        reactor.run_once()
        assert reactor.errors == 2
        assert sorted(type(e).__name__ for e in seen) == ["KeyError", "ValueError"]
        assert sorted(ran) == ["post after", "timer after"]
        # and the loop goes on
        reactor.call_later(1, ran.append, "next")
        clock.now += 1
        reactor.run_once()
        assert ran[-1] == "next" and reactor.errors == 2
    finally:
        reactor.close()



def test_self_rearming_timer_and_post_run_once_a_pass():
    r, clock, poller = _reactor()
    runs = []

    def timer_again():
        runs.append("t")
        r.call_soon(timer_again)

    def post_again():
        runs.append("p")
        r.post(post_again)

    r.call_soon(timer_again)
    r.post(post_again)
    r.run_once()
    r.run_once()
    assert runs.count("t") == 2 and runs.count("p") == 2
    assert poller.timeouts[-2:] == [0, 0]     # the loop went back to poll each pass
