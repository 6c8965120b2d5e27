"""The orchestration core: fed events, returns actions; no I/O, no clock, no processes.

The supervisor (the I/O shell) calls one method per thing that happened
(``on_spawned``, ``on_exited``, ``on_ready``, ``on_probe``, ``on_timer``,
``request_stop`` ...) passing the current time, and carries out the actions
returned, in order. Every state change goes through ``state.TRANSITIONS``.
Tests drive the whole graph this way without a single process.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable, Iterable
from typing import Any

from talos_init.record import field, record
from talos_init.service import graph
from talos_init.service.definition import Definition, InvalidDefinitions
from talos_init.service.state import ACTIVE, ENDED, Ev, State, Status, Transition, Want

# -- actions -------------------------------------------------------------------

@record(frozen=True)
class Spawn:
    id: str


@record(frozen=True)
class Signal:
    """Send ``signum`` to the service's process group and cgroup."""
    id: str
    signum: int


@record(frozen=True)
class StartTimer:
    id: str  # "" for the core's own condition re-check
    name: str  # backoff | stop | conditions
    delay: float


@record(frozen=True)
class CancelTimer:
    id: str
    name: str


@record(frozen=True)
class StartProbe:
    id: str


@record(frozen=True)
class StopProbe:
    id: str


@record(frozen=True)
class Record:
    """An event for the EventLog: ``kind`` "service" for state changes, "health" for probes."""
    id: str
    state: str
    reason: str
    kind: str = "service"
    fields: dict[str, Any] = field(default_factory=dict)


@record(frozen=True)
class AllStopped:
    pass


@record(frozen=True)
class Health:
    """What is known of a service's health, for the API: see ``Core.health``."""
    state: str | None  # ok | failing | unknown; None: no health applies (one-shot, not running)
    message: str = ""
    since: float | None = None  # when this state began (the probe result's first, or READY)


Action = Spawn | Signal | StartTimer | CancelTimer | StartProbe | StopProbe | Record | AllStopped
Check = Callable[[Definition], "str | None"]  # None: holds; else why not


def _always(definition: Definition) -> str | None:
    return None


class Core:
    CONDITION_RECHECK = (0.25, 5.0)  # first and largest delay while a condition is unmet

    def __init__(self, definitions: Iterable[Definition], check_conditions: Check = _always,
                 check_skip: Check = _always, rng: random.Random | None = None,
                 check_done: Check = _always):
        defs = list(definitions)
        errors = graph.check(defs)
        if errors:
            raise InvalidDefinitions(errors)
        self.defs = {d.id: d for d in defs}
        self.order = graph.start_order(defs)
        self.dependents = graph.dependents(defs)
        self.status = {i: Status(i) for i in self.order}
        self.check_conditions = check_conditions
        self.check_skip = check_skip
        self.check_done = check_done  # a reason: the one-shot's work is done already
        self.rng = rng or random.Random()
        self.stopping_all = False
        self.all_stopped = False
        self._recheck_delay = self.CONDITION_RECHECK[0]
        self._recheck_pending = False

    # -- helpers -----------------------------------------------------------------

    def _move(self, out: list[Action], st: Status, event: Ev, reason: str, now: float,
              **fields: Any) -> None:
        if st.apply(event, reason, now):
            out.append(Record(st.id, st.state.value, reason, fields=fields))

    def satisfied(self, dep: str) -> bool:
        st = self.status[dep]
        return st.state is State.READY or (
            st.state is State.FINISHED and self.defs[dep].one_shot and st.last_exit_ok)

    def _blocked_by(self, d: Definition) -> str | None:
        reasons = []
        for dep in graph.dependencies(d):
            if self.satisfied(dep):
                continue
            st = self.status[dep]
            if st.state is State.FAILED:
                reasons.append(f"dependency {dep} failed: {st.reason}")
            elif st.state is State.SKIPPED:
                reasons.append(f"dependency {dep} skipped: {st.reason}")
            elif st.state is State.FINISHED:
                reasons.append(f"dependency {dep} is finished ({st.reason})")
            else:
                reasons.append(f"waiting for {dep} ({st.state})")
        return "; ".join(reasons) or None

    # -- starting ------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Begin: every service is waiting; start whatever can start."""
        out: list[Action] = []
        for st in self.status.values():
            st.history.append(Transition(now, st.state, "graph loaded"))
            st.reason = "graph loaded"
            out.append(Record(st.id, st.state.value, st.reason))
        self._evaluate(now, out)
        return out

    def _evaluate(self, now: float, out: list[Action]) -> None:
        if self.stopping_all:
            return
        unmet_condition = False
        for sid in self.order:
            st, d = self.status[sid], self.defs[sid]
            if st.state is not State.WAITING or st.want is not Want.UP:
                continue
            blocked = self._blocked_by(d)
            if blocked:
                self._move(out, st, Ev.WAIT, blocked, now)
                continue
            skip = self.check_skip(d)
            if skip:
                self._move(out, st, Ev.SKIP, skip, now)
                continue
            done = self.check_done(d)
            if done:
                st.last_exit, st.last_exit_ok = done, True
                self._move(out, st, Ev.DONE, done, now)
                continue
            unmet = self.check_conditions(d)
            if unmet:
                unmet_condition = True
                self._move(out, st, Ev.WAIT, f"condition not met: {unmet}", now)
                continue
            self._move(out, st, Ev.START, "dependencies ready" if d.depends_on else "starting", now)
            out.append(Spawn(sid))
        if unmet_condition and not self._recheck_pending:
            self._recheck_pending = True
            out.append(StartTimer("", "conditions", self._recheck_delay))
            self._recheck_delay = min(self.CONDITION_RECHECK[1], self._recheck_delay * 2)
        elif not unmet_condition:
            self._recheck_delay = self.CONDITION_RECHECK[0]

    def recheck(self, now: float) -> list[Action]:
        """Something outside changed (a file appeared, the network came up)."""
        out: list[Action] = []
        self._evaluate(now, out)
        return out

    def on_spawned(self, sid: str, pid: int, now: float) -> list[Action]:
        out: list[Action] = []
        st, d = self.status[sid], self.defs[sid]
        st.pid = st.session = pid
        st.started_at, st.ready_at = now, None
        st.healthy, st.health_message, st.probe_failures, st.status_text = None, "", 0, ""
        st.probe_ok, st.health_since = None, None
        self._move(out, st, Ev.SPAWNED, f"pid {pid}", now, pid=pid)
        if d.readiness.kind == "probe":
            out.append(StartProbe(sid))
        if d.readiness.kind == "none":
            self._ready(out, st, "running (no readiness check)", now)
        else:
            self._evaluate(now, out)  # dependents now say what they wait for
        return out

    def on_spawn_failed(self, sid: str, reason: str, now: float) -> list[Action]:
        out: list[Action] = []
        st, d = self.status[sid], self.defs[sid]
        st.last_exit, st.last_exit_ok = reason, False
        if d.restart == "never" or st.want is Want.DOWN:
            self._move(out, st, Ev.SPAWN_FAILED, f"cannot start: {reason}", now)
        else:
            self._backoff(out, st, d, Ev.SPAWN_FAILED_RESTART, f"cannot start: {reason}", now,
                          run_seconds=0.0)
        self._after_change(now, out)
        return out

    # -- readiness and health ------------------------------------------------------

    def _ready(self, out: list[Action], st: Status, how: str, now: float) -> None:
        st.ready_at = now
        if self.defs[st.id].readiness.kind != "probe":
            st.health_message = how  # no probe: READY=1 (or the spawn) is what is known
        self._move(out, st, Ev.READY, how, now)
        self._evaluate(now, out)

    def on_ready(self, sid: str, how: str, now: float) -> list[Action]:
        """READY=1 from the service's own process; late or repeated ones are ignored."""
        out: list[Action] = []
        st = self.status[sid]
        if st.state is State.RUNNING and self.defs[sid].readiness.kind in ("notify", "none"):
            self._ready(out, st, how, now)
        return out

    def on_probe(self, sid: str, ok: bool, message: str, now: float) -> list[Action]:
        out: list[Action] = []
        st, d = self.status[sid], self.defs[sid]
        if st.state not in (State.RUNNING, State.READY) or d.readiness.probe is None:
            return out
        st.health_message = message
        if st.probe_ok is not ok:
            st.probe_ok, st.health_since = ok, now
        if ok:
            st.probe_failures = 0
            if st.healthy is False:
                out.append(Record(sid, st.state.value, f"healthy again: {message}", kind="health"))
            st.healthy = True
            if st.state is State.RUNNING:
                self._ready(out, st, f"probe ok: {message}", now)
            return out
        st.probe_failures += 1
        if st.probe_failures >= d.readiness.probe.failure_threshold and st.healthy is not False:
            st.healthy = False
            out.append(Record(sid, st.state.value,
                              f"unhealthy: {st.probe_failures} probes failed in a row: {message}",
                              kind="health"))
        return out

    def on_status(self, sid: str, text: str) -> None:
        self.status[sid].status_text = text[:200]

    # -- exits and restarts -------------------------------------------------------

    def on_exited(self, sid: str, pid: int, how: str, ok: bool, now: float) -> list[Action]:
        """The process ``pid`` ended; ``how`` is readable ("exited with code 1")."""
        out: list[Action] = []
        st, d = self.status[sid], self.defs[sid]
        if pid != st.pid:
            return out  # an older main pid (MAINPID= moved it): not the service's end
        st.pid = None
        st.last_exit, st.last_exit_ok = how, ok
        if d.readiness.kind == "probe":
            out.append(StopProbe(sid))
        if st.state is State.STOPPING:
            out.append(CancelTimer(sid, "stop"))
            self._move(out, st, Ev.STOPPED, f"stopped: {how}", now)
            if st.restart_after_stop and not self.stopping_all:
                st.restart_after_stop, st.want = False, Want.UP
                self._move(out, st, Ev.RESET, "restart requested", now)
        elif st.state in (State.RUNNING, State.READY):
            run = now - (st.started_at if st.started_at is not None else now)
            if ok and (d.one_shot or d.restart != "always"):
                self._move(out, st, Ev.EXITED_OK, "completed" if d.one_shot else how, now)
            elif d.restart == "never" or st.want is Want.DOWN:
                self._move(out, st, Ev.EXITED_FAILED, how, now)
            else:
                self._backoff(out, st, d, Ev.EXITED_RESTART, how, now, run_seconds=run)
        self._after_change(now, out)
        return out

    def _backoff(self, out: list[Action], st: Status, d: Definition, event: Ev, how: str,
                 now: float, run_seconds: float) -> None:
        st.crashes_in_row = d.backoff.crashes_after(st.crashes_in_row, run_seconds)
        delay = d.backoff.delay(st.crashes_in_row, self.rng)
        n = st.crashes_in_row
        prefix = f"crashed {n} times in a row: " if n > 1 else ""
        self._move(out, st, event, f"{prefix}{how}; restart in {delay:.2f}s", now,
                   crashes_in_row=n, delay=round(delay, 3))
        out.append(StartTimer(st.id, "backoff", delay))

    def _after_change(self, now: float, out: list[Action]) -> None:
        if self.stopping_all:
            self._advance_stop(now, out)
        else:
            self._evaluate(now, out)

    def on_timer(self, sid: str, name: str, now: float) -> list[Action]:
        out: list[Action] = []
        if name == "conditions":
            self._recheck_pending = False
            self._evaluate(now, out)
            return out
        st, d = self.status[sid], self.defs[sid]
        if name == "backoff" and st.state is State.BACKOFF and st.want is Want.UP:
            st.restarts += 1
            self._move(out, st, Ev.BACKOFF_OVER, f"restart {st.restarts}", now,
                       restarts=st.restarts)
            out.append(Spawn(sid))
        elif name == "stop" and st.state is State.STOPPING:
            self._move(out, st, Ev.KILL,
                       f"did not stop within {d.stop_timeout:g}s: sending SIGKILL", now)
            out.append(Signal(sid, int(signal.SIGKILL)))
        return out

    # -- wanted state: stop, start, restart ------------------------------------------

    def _stop_one(self, out: list[Action], st: Status, reason: str, now: float) -> None:
        d = self.defs[st.id]
        if st.state in (State.RUNNING, State.READY):
            self._move(out, st, Ev.STOP, reason, now)
            if d.readiness.kind == "probe":
                out.append(StopProbe(st.id))
            out.append(Signal(st.id, d.stop_signal))
            out.append(StartTimer(st.id, "stop", d.stop_timeout))
        elif st.state is State.WAITING:
            self._move(out, st, Ev.CANCEL, f"{reason} before it started", now)
        elif st.state is State.BACKOFF:
            out.append(CancelTimer(st.id, "backoff"))
            self._move(out, st, Ev.CANCEL, f"{reason} while waiting to restart", now)

    def request_stop(self, sid: str, now: float) -> list[Action]:
        """Stop one service and keep it down; its dependents are left as they are."""
        out: list[Action] = []
        st = self.status[sid]
        st.want, st.restart_after_stop = Want.DOWN, False
        self._stop_one(out, st, "stop requested", now)
        return out

    def request_start(self, sid: str, now: float) -> list[Action]:
        out: list[Action] = []
        st = self.status[sid]
        if self.stopping_all:
            return out
        st.want = Want.UP
        if st.state in ENDED:
            st.crashes_in_row = 0
            self._move(out, st, Ev.RESET, "start requested", now)
            self._evaluate(now, out)
        elif st.state is State.BACKOFF:
            out.append(CancelTimer(sid, "backoff"))
            out.extend(self.on_timer(sid, "backoff", now))
        elif st.state is State.STOPPING:
            st.restart_after_stop = True
        return out

    def request_restart(self, sid: str, now: float) -> list[Action]:
        out: list[Action] = []
        st = self.status[sid]
        if self.stopping_all:
            return out
        if st.state in (State.RUNNING, State.READY, State.STOPPING):
            st.want, st.restart_after_stop = Want.UP, True
            self._stop_one(out, st, "restart requested", now)
            return out
        return self.request_start(sid, now)

    def stop_all(self, now: float) -> list[Action]:
        """Stop everything, dependents before their dependencies (shutdown)."""
        out: list[Action] = []
        self.stopping_all = True
        if self._recheck_pending:
            out.append(CancelTimer("", "conditions"))
            self._recheck_pending = False
        for st in self.status.values():
            st.want, st.restart_after_stop = Want.DOWN, False
        self._advance_stop(now, out)
        return out

    def _advance_stop(self, now: float, out: list[Action]) -> None:
        for sid in reversed(self.order):
            st = self.status[sid]
            no_process = st.state in (State.WAITING, State.BACKOFF)
            dependents_down = not any(self.status[x].state in ACTIVE for x in self.dependents[sid])
            if no_process or (st.state in (State.RUNNING, State.READY) and dependents_down):
                self._stop_one(out, st, "system stopping", now)
        if not self.all_stopped and all(s.state not in ACTIVE for s in self.status.values()):
            self.all_stopped = True
            out.append(AllStopped())

    # -- views ------------------------------------------------------------------------

    def health(self, sid: str) -> Health:
        """ok after the last probe (or READY=1, with no probe) passed; failing after it failed."""
        st, d = self.status[sid], self.defs[sid]
        if d.one_shot or st.state not in (State.RUNNING, State.READY):
            return Health(None)
        if d.readiness.kind == "probe":
            if st.probe_ok is None:
                return Health("unknown", "no probe result yet")
            return Health("ok" if st.probe_ok else "failing", st.health_message, st.health_since)
        if st.state is State.READY:
            return Health("ok", st.health_message, st.ready_at)
        return Health("unknown", "waiting for READY=1")

    def service_for_session(self, sid_or_pid: int) -> str | None:
        for st in self.status.values():
            if st.state in ACTIVE and sid_or_pid in (st.pid, st.session):
                return st.id
        return None

    def set_main_pid(self, sid: str, pid: int) -> None:
        st = self.status[sid]
        if st.state in (State.RUNNING, State.READY, State.STOPPING):
            st.pid = pid

    def sequence(self, sid: str) -> list[str]:
        """The states a service went through, in order (tests and the CLI)."""
        return [t.state.value for t in self.status[sid].history]
