"""PID 1's event loop: file descriptors, timers and signals, nothing else.

A few hundred bytes of state instead of asyncio: PID 1 imports nothing it
does not need. The loop sleeps in the selector until an fd is ready, a timer
is due or a signal arrives (through ``signal.set_wakeup_fd``), so an idle
node costs no wake-ups. An exception in a callback is logged and the loop
goes on: PID 1 must never exit.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from talos_init.log import get_logger

log = get_logger("loop")

Callback = Callable[..., Any]


class Timer:
    """A pending ``call_later``; ``cancel()`` is safe to call at any time."""

    __slots__ = ("when", "seq", "callback", "args", "cancelled")

    def __init__(self, when: float, seq: int, callback: Callback, args: tuple[Any, ...]):
        self.when = when
        self.seq = seq
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


def _ignore_signal(signum: int, frame: object) -> None:
    # The C-level handler has already written signum to the wakeup fd.
    pass


class _Handlers:
    """Reader and writer callbacks of one fd, kept as the selector key's data."""

    __slots__ = ("pair",)

    def __init__(self, pair: list[Callback | None]):
        self.pair = pair


_WAKEUP = object()  # selector data of the signal wake-up pipe


class Loop:
    """Single-threaded loop; every callback runs in the loop's thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._selector = selectors.DefaultSelector()
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._ready: deque[tuple[Callback, tuple[Any, ...]]] = deque()
        self._signal_handlers: dict[int, Callback] = {}
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKEUP)
        self.wakeups = 0  # counted so benchmarks can show an idle loop stays asleep

    # -- file descriptors ---------------------------------------------------

    def add_reader(self, fd: int, callback: Callback, *args: Any) -> None:
        self._set(fd, 0, lambda: callback(*args))

    def remove_reader(self, fd: int) -> None:
        self._set(fd, 0, None)  # removing twice is not an error

    def add_writer(self, fd: int, callback: Callback, *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable (until removed)."""
        self._set(fd, 1, lambda: callback(*args))

    def remove_writer(self, fd: int) -> None:
        self._set(fd, 1, None)

    def _set(self, fd: int, slot: int, callback: Callback | None) -> None:
        # One selector key per fd holds [reader, writer]; the mask follows them.
        try:
            key = self._selector.get_key(fd)
            pair = list(key.data.pair)
        except (KeyError, ValueError):
            key, pair = None, [None, None]
        pair[slot] = callback
        mask = (selectors.EVENT_READ if pair[0] else 0) | (selectors.EVENT_WRITE if pair[1] else 0)
        if key is not None:
            if mask:
                self._selector.modify(fd, mask, _Handlers(pair))
            else:
                self._selector.unregister(fd)
        elif mask:
            self._selector.register(fd, mask, _Handlers(pair))

    # -- timers and deferred calls -------------------------------------------

    def call_soon(self, callback: Callback, *args: Any) -> None:
        self._ready.append((callback, args))

    def call_later(self, delay: float, callback: Callback, *args: Any) -> Timer:
        return self.call_at(self.clock() + max(0.0, delay), callback, *args)

    def call_at(self, when: float, callback: Callback, *args: Any) -> Timer:
        timer = Timer(when, next(self._seq), callback, args)
        heapq.heappush(self._timers, timer)
        return timer

    def pending_timers(self) -> int:
        return sum(1 for t in self._timers if not t.cancelled)

    # -- signals --------------------------------------------------------------

    def add_signal_handler(self, signum: int, callback: Callback) -> None:
        """Run ``callback(signum)`` from the loop (never inside the handler)."""
        self._signal_handlers[signum] = callback
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signum, _ignore_signal)
        signal.siginterrupt(signum, False)

    def remove_signal_handler(self, signum: int) -> None:
        self._signal_handlers.pop(signum, None)
        signal.signal(signum, signal.SIG_DFL)

    def _on_wakeup(self) -> None:
        try:
            data = os.read(self._wake_r, 4096)
        except BlockingIOError:
            return
        # A signal delivered many times between two reads runs its handler once
        # per byte, except SIGCHLD-style handlers that drain their own queue.
        for signum in dict.fromkeys(data):
            handler = self._signal_handlers.get(signum)
            if handler is not None:
                self._run(handler, (signum,))

    # -- running ----------------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True

    def run_forever(self) -> None:
        self._stopping = False
        while not self._stopping:
            self.run_once()

    def run_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Run until ``predicate()`` holds; False if ``timeout`` ran out first."""
        deadline = None if timeout is None else self.clock() + timeout
        while not predicate():
            if deadline is not None:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return False
                self.run_once(max_wait=remaining)
            else:
                self.run_once()
        return True

    def run_once(self, max_wait: float | None = None) -> None:
        timeout = self._next_timeout()
        if max_wait is not None:
            timeout = max_wait if timeout is None else min(timeout, max_wait)
        try:
            events = self._selector.select(timeout)
        except InterruptedError:
            events = []
        self.wakeups += 1
        for key, mask in events:
            if key.data is _WAKEUP:
                self._on_wakeup()
                continue
            # An earlier callback may have removed this fd: look it up each time.
            for flag, slot in ((selectors.EVENT_READ, 0), (selectors.EVENT_WRITE, 1)):
                current = self._selector.get_map().get(key.fd)
                if mask & flag and current is not None and current.data is not _WAKEUP:
                    callback = current.data.pair[slot]
                    if callback is not None:
                        self._run(callback, ())
        now = self.clock()
        while self._timers and self._timers[0].when <= now:
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._ready.append((timer.callback, timer.args))
        # Only what is ready now: callbacks queued by these run next turn.
        for _ in range(len(self._ready)):
            callback, args = self._ready.popleft()
            self._run(callback, args)

    def _next_timeout(self) -> float | None:
        if self._ready:
            return 0.0
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        return max(0.0, self._timers[0].when - self.clock())

    def _run(self, callback: Callback, args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except Exception:
            # Policy: log with traceback and keep looping; PID 1 must not die.
            log.exception("callback_failed", callback=getattr(callback, "__qualname__", repr(callback)))

    def close(self) -> None:
        for signum in list(self._signal_handlers):
            self.remove_signal_handler(signum)
        signal.set_wakeup_fd(-1)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
