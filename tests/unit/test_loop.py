"""The event loop: timers in order, signals dispatched from the loop, errors survived."""

import os
import signal

from talos_init.loop import Loop


def test_timers_fire_in_order_and_cancel():
    loop = Loop()
    fired = []
    loop.call_later(0.02, fired.append, "b")
    loop.call_later(0.01, fired.append, "a")
    loop.call_later(0.015, fired.append, "x").cancel()
    assert loop.run_until(lambda: len(fired) == 2, timeout=5)
    assert fired == ["a", "b"]
    loop.close()


def test_signal_runs_handler_in_loop():
    loop = Loop()
    got = []
    loop.add_signal_handler(signal.SIGUSR1, got.append)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert loop.run_until(lambda: got, timeout=5)
    assert got == [signal.SIGUSR1]
    loop.close()


def test_exception_in_callback_does_not_stop_the_loop():
    loop = Loop()
    after = []

    def boom():
        raise RuntimeError("boom")

    loop.call_soon(boom)
    loop.call_later(0.01, after.append, 1)
    assert loop.run_until(lambda: after, timeout=5)
    loop.close()


def test_idle_loop_sleeps():
    """With one timer a second away, a 0.2 s run wakes at most twice."""
    loop = Loop()
    loop.call_later(1.0, lambda: None)
    loop.run_until(lambda: False, timeout=0.2)
    assert loop.wakeups <= 2
    loop.close()


def test_reader_and_writer_share_one_fd():
    """A reader and a writer on the same fd both run, and removing one keeps the other."""
    import socket

    loop = Loop()
    a, b = socket.socketpair()
    got, wrote = [], []
    loop.add_reader(a.fileno(), lambda: got.append(a.recv(10)))
    loop.add_writer(a.fileno(), lambda: (wrote.append(1), loop.remove_writer(a.fileno())))
    b.send(b"hi")
    assert loop.run_until(lambda: got and wrote, timeout=5)
    b.send(b"again")
    assert loop.run_until(lambda: len(got) == 2, timeout=5)
    assert got == [b"hi", b"again"] and wrote == [1]
    loop.remove_reader(a.fileno())
    loop.remove_reader(a.fileno())  # twice is fine
    a.close()
    b.close()
    loop.close()
