"""The event record: boot phases and service state changes, with monotonic time.

One bounded history feeds the log, the API's ``events`` stream and the boot
timeline. ``time.monotonic()`` in the guest counts from kernel start, so an
event's ``t`` is already "seconds since boot".
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from talos_init.record import field, record


@record(frozen=True)
class Event:
    t: float  # time.monotonic() when it happened
    kind: str  # "phase" for boot phases, "service" for state changes
    name: str  # phase name, or service id
    state: str  # phase: "start"/"done"/"failed"; service: the new state
    reason: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 6), "kind": self.kind, "name": self.name,
                "state": self.state, "reason": self.reason, **self.fields}


Subscriber = Callable[[Event], None]


class EventLog:
    """Bounded history plus subscribers; recording never blocks or raises."""

    def __init__(self, limit: int = 4096, clock: Callable[[], float] = time.monotonic):
        self._history: deque[Event] = deque(maxlen=limit)
        self._subscribers: list[Subscriber] = []
        self._clock = clock
        self.seq = 0  # events ever recorded, so followers can tell what they missed

    def record(self, kind: str, name: str, state: str, reason: str = "", **fields: Any) -> Event:
        event = Event(self._clock(), kind, name, state, reason, fields)
        self._history.append(event)
        self.seq += 1
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # a broken follower must not break recording
                self._subscribers.remove(subscriber)
        return event

    def phase(self, name: str, state: str, reason: str = "", **fields: Any) -> Event:
        return self.record("phase", name, state, reason, **fields)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def history(self, kind: str | None = None, name: str | None = None) -> list[Event]:
        return [e for e in self._history
                if (kind is None or e.kind == kind) and (name is None or e.name == name)]
