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
