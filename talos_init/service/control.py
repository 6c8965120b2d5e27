"""Control-socket methods backed by the supervisor (the api branch's ControlServer).

PID 1 calls ``register(server, supervisor)`` next to the events/timeline
registration. Methods, as apid calls them:

- ``services.list`` -> ``supervisor.services()``
- ``services.start`` / ``services.stop`` / ``services.restart`` ``{"id"}`` ->
  ``{"id", "state", "want", "reason"}`` right after the request was applied
- ``logs`` ``{"id", "tail", "follow"}`` (stream) -> items ``{"line": text}``
"""

from __future__ import annotations

from typing import Any

from talos_init.service.supervisor import Supervisor, UnknownService


def register(server: Any, supervisor: Supervisor) -> None:
    from talos_init.control.protocol import BAD_REQUEST, NOT_FOUND, ControlError

    def service_id(params: dict[str, Any]) -> str:
        sid = params.get("id")
        if not isinstance(sid, str) or not sid:
            raise ControlError(BAD_REQUEST, "id must be a service id")
        if sid not in supervisor.defs:
            raise ControlError(NOT_FOUND, str(UnknownService(sid)))
        return sid

    def brief(sid: str) -> dict[str, Any]:
        st = supervisor.core.status[sid]
        return {"id": sid, "state": st.state.value, "want": st.want.value, "reason": st.reason}

    def action(name: str) -> Any:
        method = getattr(supervisor, f"{name}_service")

        def handler(params: dict[str, Any]) -> dict[str, Any]:
            sid = service_id(params)
            method(sid)
            return brief(sid)
        return handler

    def logs(params: dict[str, Any], stream: Any) -> None:
        sid = service_id(params)
        tail = params.get("tail")
        if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
            raise ControlError(BAD_REQUEST, "tail must be a non-negative integer")
        for line in supervisor.logs(sid, tail):
            stream.send({"line": line})
        if not params.get("follow"):
            stream.end()
            return
        stream.on_close(supervisor.follow_logs(sid, lambda line: stream.send({"line": line})))

    server.register("services.list", lambda params: supervisor.services())
    for name in ("start", "stop", "restart"):
        server.register(f"services.{name}", action(name))
    server.register_stream("logs", logs)
