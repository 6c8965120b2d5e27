"""Control methods backed by PID 1's EventLog: ``events`` (tail, follow) and ``timeline``.

PID 1 calls ``register(server, event_log)``; the supervisor's own methods
(services, logs, reboot...) are registered by PID 1 next to it.
"""

from __future__ import annotations

from typing import Any

from talos_init.control.protocol import BAD_REQUEST, ControlError
from talos_init.control.server import ControlServer, Stream
from talos_init.events import Event, EventLog


def _tail(params: dict[str, Any]) -> int | None:
    tail = params.get("tail")
    if tail is not None and (not isinstance(tail, int) or isinstance(tail, bool) or tail < 0):
        raise ControlError(BAD_REQUEST, "tail must be a non-negative integer")
    return tail


def register(server: ControlServer, events: EventLog) -> None:
    def stream_events(params: dict[str, Any], stream: Stream) -> None:
        tail = _tail(params)
        history = events.history()
        for event in history[len(history) - tail if tail is not None and tail < len(history) else 0:]:
            stream.send(event.as_dict())
        if not params.get("follow"):
            stream.end()
            return

        def forward(event: Event) -> None:
            stream.send(event.as_dict())

        stream.on_close(events.subscribe(forward))

    def timeline(params: dict[str, Any]) -> list[dict[str, Any]]:
        return [e.as_dict() for e in events.history()]

    server.register_stream("events", stream_events)
    server.register("timeline", timeline)
