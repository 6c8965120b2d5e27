"""PID 1's end of the control socket: start the server, register what PID 1 itself owns.

Two calls from init.py, nothing else:

    control = pid1.start(loop, paths.control_socket, events, request_shutdown)
    service_control.register(control, supervisor)   # once the supervisor exists

The socket is up before the service graph so that a node whose graph is
refused still answers ``events``/``timeline`` and can be rebooted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from talos_init.control import events as control_events
from talos_init.control.server import ControlServer, Limits
from talos_init.events import EventLog
from talos_init.loop import Loop

RequestShutdown = Callable[[str, str], bool]  # (action: reboot|poweroff, reason) -> accepted


def start(loop: Loop, path: Path, events: EventLog, request_shutdown: RequestShutdown,
          limits: Limits = Limits()) -> ControlServer:
    server = ControlServer(loop, path, limits=limits)
    control_events.register(server, events)

    def power(action: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def handler(params: dict[str, Any]) -> dict[str, Any]:
            # The reply is queued before the shutdown's first step runs on a later loop turn.
            return {"action": action, "accepted": bool(request_shutdown(action, "API request"))}
        return handler

    server.register("reboot", power("reboot"))
    server.register("shutdown", power("poweroff"))
    # The loop's own wake-up counter: tests and benchmarks check that an idle PID 1 sleeps.
    server.register("loop", lambda params: {"wakeups": loop.wakeups, "timers": loop.pending_timers()})
    server.start()
    return server
