"""The one shutdown sequence, whatever asked for it (signal, API, failed boot).

Steps, each recorded as a phase event with its duration:

1. ``stop_services``: the supervisor stops services in reverse dependency
   order (``stop_services(deadline, on_done)``), bounded by ``deadline``.
2. ``terminate``: SIGTERM (and SIGCONT, to wake stopped ones) to every
   process left, then wait for them, bounded.
3. ``kill``: SIGKILL to whatever survived, bounded wait.
4. ``sync``.
5. ``unmount``: reverse order, read-only where unmount fails (real PID 1 only).
6. the action itself (``reboot``, ``poweroff``, ``halt``): ``final(action)``.

The sequence runs as loop callbacks, so the reaper keeps collecting exits
while it waits. A failing step is logged and the next one runs: shutdown
never stops half-way.

Safety: ``scope="all"`` uses kill(-1), which in the host's pid namespace
would kill the whole machine; it is refused unless we really are PID 1.
``scope="descendants"`` (host mode, tests) only ever signals processes whose
ancestry reaches our pid.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from talos_init import proctree, syscalls
from talos_init.events import EventLog
from talos_init.log import get_logger
from talos_init.loop import Loop
from talos_init.reaper import Reaper

log = get_logger("shutdown")

REBOOT_COMMANDS = {
    "reboot": syscalls.RB_AUTOBOOT,
    "poweroff": syscalls.RB_POWER_OFF,
    "halt": syscalls.RB_HALT_SYSTEM,
}

Done = Callable[[], None]
# The supervisor's part: stop every service, call on_done() when all are down.
# deadline is on the loop's clock; after it the sequence goes on regardless.
StopServices = Callable[[float, Done], None]
Final = Callable[[str], None]


def reboot_command(action: str) -> int:
    """The reboot(2) command for an action; ValueError names a bad one."""
    try:
        return REBOOT_COMMANDS[action]
    except KeyError:
        raise ValueError(f"unknown shutdown action {action!r}; "
                         f"expected one of {', '.join(REBOOT_COMMANDS)}") from None


def reboot_final(action: str) -> None:
    """Real PID 1's last step."""
    syscalls.reboot(reboot_command(action))


class Shutdown:
    def __init__(self, loop: Loop, reaper: Reaper, events: EventLog, *, final: Final,
                 scope: str = "descendants", stop_services: StopServices | None = None,
                 unmount: Callable[[], object] | None = None, proc: Path = Path("/proc"),
                 stop_timeout: float = 30.0, term_timeout: float = 10.0,
                 kill_timeout: float = 5.0, poll_interval: float = 0.05):
        if scope not in ("all", "descendants"):
            raise ValueError(f"scope must be 'all' or 'descendants', not {scope!r}")
        if scope == "all" and os.getpid() != 1:
            raise ValueError("scope 'all' (kill -1) is only for PID 1; use 'descendants'")
        self.loop, self.reaper, self.events = loop, reaper, events
        self.final, self.scope = final, scope
        self.stop_services, self.unmount = stop_services, unmount
        self.proc = proc
        self.stop_timeout, self.term_timeout = stop_timeout, term_timeout
        self.kill_timeout, self.poll_interval = kill_timeout, poll_interval
        self.action: str | None = None
        self._steps: list[tuple[str, Callable[[Callable[..., None]], None]]] = []

    @property
    def in_progress(self) -> bool:
        return self.action is not None

    def request(self, action: str, reason: str, wipe: list[str] | tuple[str, ...] = ()) -> bool:
        """Start the sequence; False (and logged) if one is already running. ``wipe``: block
        devices erased after the unmount (osctl reset; talos_init/wipe.py)."""
        reboot_command(action)  # a bad action fails here, before anything stops
        if self.action is not None:
            log.warning("shutdown_already_running", action=self.action, ignored=action,
                        reason=reason)
            return False
        self.action = action
        self.events.phase("shutdown", "start", reason, action=action)
        log.info("shutdown_requested", action=action, reason=reason)
        self._steps = [
            ("stop_services", self._stop_services),
            ("terminate", lambda done: self._signal_and_wait(signal.SIGTERM, self.term_timeout,
                                                             done)),
            ("kill", lambda done: self._signal_and_wait(signal.SIGKILL, self.kill_timeout, done)),
            ("sync", self._sync),
            ("unmount", self._unmount),
            *([("wipe", lambda done: self._wipe(list(wipe), done))] if wipe else []),
            (action, self._final),
        ]
        self.loop.call_soon(self._run_step, 0)
        return True

    # -- sequencing -------------------------------------------------------------

    def _run_step(self, index: int) -> None:
        name, step = self._steps[index]
        phase = f"shutdown.{name}"
        start = self.loop.clock()
        finished = False
        self.events.phase(phase, "start")

        def done(state: str = "done", reason: str = "", **fields: object) -> None:
            nonlocal finished
            if finished:
                return
            finished = True
            duration = round(self.loop.clock() - start, 6)
            # The event is the log line: PID 1 logs every phase event it records.
            self.events.phase(phase, state, reason, duration=duration, **fields)
            if index + 1 < len(self._steps):
                self.loop.call_soon(self._run_step, index + 1)

        try:
            step(done)
        except Exception as e:
            # Policy: log and go on; a half-done shutdown is worse than a skipped step.
            log.exception("shutdown_step_failed", step=name)
            done("failed", f"{type(e).__name__}: {e}")

    # -- steps -------------------------------------------------------------------

    def _stop_services(self, done: Callable[..., None]) -> None:
        if self.stop_services is None:
            done("skipped", "no service supervisor")
            return
        deadline = self.loop.clock() + self.stop_timeout
        timer = self.loop.call_at(deadline, done, "timeout",
                                  f"services not stopped after {self.stop_timeout}s")

        def on_done() -> None:
            timer.cancel()
            done()

        self.stop_services(deadline, on_done)

    def _remaining(self) -> set[int]:
        procs = proctree.snapshot(self.proc)
        me = os.getpid()
        if self.scope == "all":
            candidates = set(procs) - {me}
        else:
            candidates = proctree.descendants(procs, me)
        return proctree.killable(procs, candidates)

    def _send(self, signum: int, pids: set[int]) -> None:
        if self.scope == "all":
            if os.getpid() != 1:  # never, but this is the one call that could kill a machine
                raise RuntimeError("refusing kill(-1) when not PID 1")
            try:
                os.kill(-1, signum)
                if signum == signal.SIGTERM:
                    os.kill(-1, signal.SIGCONT)
            except ProcessLookupError:
                pass  # nobody left to signal
            return
        for pid in pids:
            try:
                os.kill(pid, signum)
                if signum == signal.SIGTERM:
                    os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass  # gone already: that is the goal

    def _signal_and_wait(self, signum: int, timeout: float, done: Callable[..., None]) -> None:
        pids = self._remaining()
        if not pids:
            done("done", "nothing left", signalled=0)
            return
        self._send(signum, pids)
        signalled = set(pids)
        deadline = self.loop.clock() + timeout

        def check() -> None:
            try:
                poll()
            except Exception as e:  # a stuck step would stall the whole shutdown
                log.exception("shutdown_wait_failed", signal=signum)
                done("failed", f"{type(e).__name__}: {e}")

        def poll() -> None:
            self.reaper.reap()  # our own children may be zombies between SIGCHLDs
            left = self._remaining()
            new = left - signalled
            if new and self.scope == "descendants":
                # Forked while we waited: they get the same signal.
                self._send(signum, new)
                signalled.update(new)
            if not left:
                done("done", signalled=len(signalled))
            elif self.loop.clock() >= deadline:
                done("timeout", f"{len(left)} processes left after {timeout}s",
                     signalled=len(signalled), left=sorted(left)[:20])
            else:
                self.loop.call_later(self.poll_interval, check)

        self.loop.call_later(self.poll_interval, check)

    def _sync(self, done: Callable[..., None]) -> None:
        syscalls.sync()
        done()

    def _unmount(self, done: Callable[..., None]) -> None:
        if self.unmount is None:
            done("skipped", "unmounting is off (host mode)")
            return
        results = self.unmount()
        statuses: dict[str, int] = {}
        for result in results if isinstance(results, list) else []:
            status = getattr(result, "status", "?")
            statuses[status] = statuses.get(status, 0) + 1
        done(**statuses)

    def _wipe(self, devices: list[str], done: Callable[..., None]) -> None:
        from talos_init import wipe

        failed = []
        for device in devices:
            try:
                size = wipe.wipe(device)
                log.warning("reset_wiped", device=device, bytes=size)
            except OSError as e:  # policy: wipe what we can, still reboot
                log.error("reset_wipe_failed", device=device, error=str(e))
                failed.append(device)
        if failed:
            done("failed", f"not wiped: {', '.join(failed)}", wiped=len(devices) - len(failed))
        else:
            done(wiped=len(devices))

    def _final(self, done: Callable[..., None]) -> None:
        assert self.action is not None
        self.events.phase("shutdown", "done", action=self.action)
        log.info("shutdown_final", action=self.action)
        # Real PID 1: reboot(2) does not return, so "done" is never recorded.
        # If it fails, PID 1 stays up, reaping, and says so.
        self.final(self.action)
        done()
