"""The reactor on CPython: real descriptors, a real thread, a descriptor that dies."""
import os
import threading

from firmware.core.reactor import DeadDescriptor, Reactor


def _spin(reactor, until, limit=200):
    for _ in range(limit):
        if until():
            return True
        reactor.run_once(50)
    return until()


def test_readable_pipe_dispatches_and_eof_reports_the_descriptor_dead():
    r = Reactor()
    rfd, wfd = os.pipe()
    got, dead = [], []

    def on_read(fd, revents):
        data = os.read(fd, 100)
        if not data:
            raise DeadDescriptor("eof")
        got.append(data)

    r.add_reader(rfd, on_read, on_dead=lambda fd, why: dead.append((fd, why)))
    os.write(wfd, b"abc")
    assert _spin(r, lambda: got == [b"abc"])
    os.close(wfd)
    assert _spin(r, lambda: dead)
    assert dead[0][0] == rfd
    assert not r.watching(rfd)
    os.close(rfd)
    r.close()


def test_hangup_without_handler_read_is_reported():
    r = Reactor()
    rfd, wfd = os.pipe()
    dead = []
    r.add_reader(rfd, lambda fd, ev: os.read(fd, 10) or (_ for _ in ()).throw(EOFError()),
                 on_dead=lambda fd, why: dead.append(why))
    os.close(wfd)
    assert _spin(r, lambda: dead)
    os.close(rfd)
    r.close()


def test_oserror_enodev_removes_descriptor():
    import errno
    r = Reactor()
    rfd, wfd = os.pipe()
    dead = []

    def gone(fd, revents):
        raise OSError(errno.ENODEV, "No such device")

    r.add_reader(rfd, gone, on_dead=lambda fd, why: dead.append(why))
    os.write(wfd, b"x")
    assert _spin(r, lambda: dead)
    assert dead == ["ENODEV"]
    os.close(rfd)
    os.close(wfd)
    r.close()


def test_post_from_a_thread_wakes_a_loop_blocked_without_timers():
    r = Reactor()
    done = []
    t = threading.Timer(0.05, lambda: r.post(done.append, "from thread"))
    t.start()
    r.run_once()            # no timers: blocks until the self-pipe wakes it
    r.run_once(0)
    t.join()
    assert done == ["from thread"]
    r.close()


def test_stop_from_a_signal_like_callback_ends_run():
    r = Reactor()
    r.call_later(10, r.stop)
    r.run()
    r.close()


def test_a_timer_rearming_itself_at_zero_delay_does_not_starve_descriptors():
    r = Reactor()
    rfd, wfd = os.pipe()
    got = []
    spins = []

    def again():
        spins.append(1)
        r.call_later(0, again)

    r.add_reader(rfd, lambda fd, ev: got.append(os.read(fd, 10)))
    r.call_later(0, again)
    os.write(wfd, b"k")
    for _ in range(5):
        r.run_once(0)
    assert got == [b"k"]
    assert len(spins) == 5          # once a pass, not forever within one
    os.close(rfd)
    os.close(wfd)
    r.close()
