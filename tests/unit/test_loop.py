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


def test_fd_can_have_reader_and_writer_and_lose_either():
    """One fd may be watched for reading and writing; removing one keeps the other."""
    import socket

    loop = Loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    seen = []
    loop.add_writer(a.fileno(), lambda: (seen.append("w"), loop.remove_writer(a.fileno())))
    loop.add_reader(a.fileno(), lambda: (seen.append("r"), a.recv(10)))
    assert loop.run_until(lambda: "w" in seen, timeout=5)
    assert "r" not in seen
    b.send(b"x")
    assert loop.run_until(lambda: "r" in seen, timeout=5)
    loop.remove_reader(a.fileno())
    loop.remove_reader(a.fileno())  # twice is fine
    b.send(b"y")
    loop.run_once(max_wait=0.05)
    assert seen.count("r") == 1 and seen.count("w") == 1
    a.close(), b.close()
    loop.close()
