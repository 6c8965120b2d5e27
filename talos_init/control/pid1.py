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
from talos_init.control.protocol import BAD_REQUEST, ControlError
from talos_init.control.server import ControlServer, Limits
from talos_init.events import EventLog
from talos_init.loop import Loop

RequestShutdown = Callable[..., bool]  # (action: reboot|poweroff, reason, wipe=()) -> accepted


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

    def reset(params: dict[str, Any]) -> dict[str, Any]:
        # apid chose the partitions (osctl reset --wipe-mode); they are erased after the
        # unmount, then the node reboots or powers off.
        from talos_init import wipe

        action = params.get("action", "reboot")
        if action not in ("reboot", "poweroff"):
            raise ControlError(BAD_REQUEST, f"action {action!r}: reboot or poweroff")
        try:
            devices = wipe.check(params.get("wipe", []))
        except wipe.WipeRefused as e:
            raise ControlError(BAD_REQUEST, str(e)) from None
        accepted = request_shutdown(action, "API reset", devices)
        return {"action": action, "wipe": devices, "accepted": bool(accepted)}

    server.register("reset", reset)
    # The loop's own wake-up counter: tests and benchmarks check that an idle PID 1 sleeps.
    server.register("loop", lambda params: {"wakeups": loop.wakeups, "timers": loop.pending_timers()})
    server.start()
    return server
