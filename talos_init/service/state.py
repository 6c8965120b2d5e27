"""The service state machine as one table, with no I/O at all.

Wanted state (up or down, runit's ``want``) is kept apart from the observed
``State``. The core decides *which* event happened (e.g. an exit that will be
restarted is ``EXITED_RESTART``); this table only says where each event may
lead. An event the table does not allow raises ``IllegalTransition`` naming
the state and the event.
"""

from __future__ import annotations

import enum
from collections import deque

from talos_init.record import field, record


class State(enum.Enum):
    WAITING = "waiting"  # for dependencies or conditions
    STARTING = "starting"  # being spawned
    RUNNING = "running"  # process up, not ready yet
    READY = "ready"  # readiness confirmed: dependents may start
    STOPPING = "stopping"  # stop signal sent, waiting for the exit
    FINISHED = "finished"  # exited cleanly, or stopped on request
    FAILED = "failed"  # exited badly and will not be restarted
    BACKOFF = "backoff"  # exited, restart timer running
    SKIPPED = "skipped"  # a skip_unless condition did not hold

    def __str__(self) -> str:
        return self.value


class Want(enum.Enum):
    UP = "up"
    DOWN = "down"

    def __str__(self) -> str:
        return self.value


class Ev(enum.Enum):
    START = "start"  # dependencies and conditions hold
    WAIT = "wait"  # still waiting, possibly for another reason
    SKIP = "skip"
    DONE = "done"  # a one-shot's done_if holds: finished without a process
    SPAWNED = "spawned"
    SPAWN_FAILED = "spawn_failed"  # and no restart
    SPAWN_FAILED_RESTART = "spawn_failed_restart"
    READY = "ready"
    EXITED_OK = "exited_ok"  # and no restart
    EXITED_FAILED = "exited_failed"  # and no restart
    EXITED_RESTART = "exited_restart"
    BACKOFF_OVER = "backoff_over"
    STOP = "stop"  # a process runs: signal it
    CANCEL = "cancel"  # no process: done at once
    KILL = "kill"  # stop timeout: SIGKILL
    STOPPED = "stopped"  # the process exited after a stop
    RESET = "reset"  # wanted up again after an end state

    def __str__(self) -> str:
        return self.value


S, E = State, Ev
_EXITS = {E.EXITED_OK: S.FINISHED, E.EXITED_FAILED: S.FAILED, E.EXITED_RESTART: S.BACKOFF}

# TRANSITIONS[state][event] -> new state. The whole machine; nothing else moves a state.
TRANSITIONS: dict[State, dict[Ev, State]] = {
    S.WAITING: {E.START: S.STARTING, E.WAIT: S.WAITING, E.SKIP: S.SKIPPED, E.DONE: S.FINISHED,
                E.CANCEL: S.FINISHED},
    S.STARTING: {E.SPAWNED: S.RUNNING, E.SPAWN_FAILED: S.FAILED,
                 E.SPAWN_FAILED_RESTART: S.BACKOFF, E.SKIP: S.SKIPPED},
    S.RUNNING: {E.READY: S.READY, E.STOP: S.STOPPING, **_EXITS},
    S.READY: {E.STOP: S.STOPPING, **_EXITS},
    S.STOPPING: {E.KILL: S.STOPPING, E.STOPPED: S.FINISHED},
    S.BACKOFF: {E.BACKOFF_OVER: S.STARTING, E.CANCEL: S.FINISHED},
    S.FINISHED: {E.RESET: S.WAITING, E.CANCEL: S.FINISHED},
    S.FAILED: {E.RESET: S.WAITING, E.CANCEL: S.FAILED},
    S.SKIPPED: {E.RESET: S.WAITING, E.CANCEL: S.SKIPPED},
}

ACTIVE = frozenset({S.STARTING, S.RUNNING, S.READY, S.STOPPING})  # a process may exist
ENDED = frozenset({S.FINISHED, S.FAILED, S.SKIPPED})


class IllegalTransition(Exception):
    def __init__(self, service: str, state: State, event: Ev):
        super().__init__(f"service {service}: event {event} is not allowed in state {state}")
        self.service, self.state, self.event = service, state, event


def next_state(service: str, state: State, event: Ev) -> State:
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition(service, state, event) from None


def allowed(state: State, event: Ev) -> bool:
    return event in TRANSITIONS[state]


HISTORY_LIMIT = 64  # per service, as Talos keeps


@record(frozen=True)
class Transition:
    t: float
    state: State
    reason: str


@record
class Status:
    """What one service is and wants, plus its recent history."""

    id: str
    state: State = State.WAITING
    want: Want = Want.UP
    reason: str = ""
    pid: int | None = None
    session: int | None = None  # the spawned pid: its session and process group id
    started_at: float | None = None  # when the current/last process was spawned
    ready_at: float | None = None
    restarts: int = 0  # total restarts by policy
    crashes_in_row: int = 0  # reset after a stable run
    last_exit: str = ""
    last_exit_ok: bool = False
    healthy: bool | None = None  # None: not probed; False once failure_threshold probes failed
    health_message: str = ""  # the last probe's result, or how READY=1 came (no probe)
    probe_failures: int = 0
    probe_ok: bool | None = None  # the last probe's result
    health_since: float | None = None  # when the last probe's result began to hold
    status_text: str = ""  # from STATUS= on NOTIFY_SOCKET
    restart_after_stop: bool = False
    history: deque[Transition] = field(default_factory=lambda: deque(maxlen=HISTORY_LIMIT))

    def apply(self, event: Ev, reason: str, now: float) -> bool:
        """Move by ``event``; True if state or reason changed (worth recording)."""
        new = next_state(self.id, self.state, event)
        changed = new is not self.state or reason != self.reason
        self.state, self.reason = new, reason
        if changed:
            self.history.append(Transition(now, new, reason))
        return changed


def markdown_table() -> str:
    """The transition table as Markdown, for docs/for-devs/services.md (kept in sync by a test)."""
    rows = ["| state | event | next state |", "|---|---|---|"]
    for state, moves in TRANSITIONS.items():
        for event, new in moves.items():
            rows.append(f"| {state} | {event} | {new} |")
    return "\n".join(rows)
