"""The one owner of every wait: reaps all children and hands out their statuses.

PID 1 (or a child subreaper in tests) inherits every orphan. A second waiter
(``subprocess.Popen.wait``) would race this one and, losing, report a crashed
child as exit 0; so nothing else in PID 1 ever calls wait. Whoever starts a
process calls ``watch(pid, callback)`` before returning to the loop.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from talos_init.log import get_logger
from talos_init.loop import Loop
from talos_init.record import record

log = get_logger("reaper")


@record(frozen=True)
class ExitStatus:
    """How a process ended: an exit code, or the signal that killed it."""

    pid: int
    code: int | None = None
    signal: int | None = None
    core_dumped: bool = False

    @classmethod
    def from_wait(cls, pid: int, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls(pid, signal=os.WTERMSIG(status), core_dumped=os.WCOREDUMP(status))
        return cls(pid, code=os.WEXITSTATUS(status))

    @property
    def success(self) -> bool:
        return self.code == 0

    def __str__(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            core = ", core dumped" if self.core_dumped else ""
            return f"killed by signal {self.signal} ({name}{core})"
        return f"exited with code {self.code}"


ExitCallback = Callable[[ExitStatus], None]


class Reaper:
    """Reaps on SIGCHLD; delivers statuses of watched pids, logs the rest."""

    def __init__(self, loop: Loop):
        self._loop = loop
        self._watchers: dict[int, ExitCallback] = {}
        self.orphans_reaped = 0
        loop.add_signal_handler(signal.SIGCHLD, self._on_sigchld)

    def watch(self, pid: int, callback: ExitCallback) -> None:
        """Call ``callback(status)`` from the loop when ``pid`` exits.

        Statuses are collected only from the loop, so a watch made in the same
        callback that started the process can never miss its exit.
        """
        self._watchers[pid] = callback

    def _on_sigchld(self, signum: int) -> None:
        self.reap()

    def reap(self) -> list[ExitStatus]:
        """Collect every exited child now; returns what it collected."""
        reaped = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break  # no children at all
            except InterruptedError:
                continue
            if pid == 0:
                break
            exit_status = ExitStatus.from_wait(pid, status)
            reaped.append(exit_status)
            callback = self._watchers.pop(pid, None)
            if callback is not None:
                self._loop.call_soon(callback, exit_status)
            else:
                self.orphans_reaped += 1
                log.debug("orphan_reaped", pid=pid, status=str(exit_status))
        return reaped
