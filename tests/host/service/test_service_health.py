"""A real supervisor's services.list over the control socket carries each service's health."""

import socket

from talos_init.control.server import ControlServer
from talos_init.service.control import register
from tests.host.service.test_control_methods import _call
from tests.host.service.test_supervisor_graph import NOTIFY_AFTER


def test_health_is_ok_failing_or_none_as_the_services_show_it(harness):
    """READY=1 -> ok; a probe that starts failing -> failing with its error and since when;
    a one-shot -> none (osctl's `-`)."""
    h = harness
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    close = h.tmp / "close"
    gate = h.tmp / "gate"
    defs = [
        h.define("notified", NOTIFY_AFTER, readiness={"notify": True}),
        # Listens until told to close its socket; keeps running after that.
        h.define("web", f"""
s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen()
while not Path({str(close)!r}).exists():
    time.sleep(0.05)
s.close()
signal.pause()
""", readiness={"probe": {"tcp": f"127.0.0.1:{port}", "period": 0.1, "timeout": 1}}),
        h.define("once", f"""
while not Path({str(gate)!r}).exists():
    time.sleep(0.05)
""", readiness={"exit": True}),
    ]
    sup = h.supervise(defs)
    server = ControlServer(h.loop, h.paths.control_socket)
    register(server, sup)
    server.start()

    def listed():
        sock, (reply,) = _call(h, h.paths.control_socket, "services.list", {})
        sock.close()
        return {s["id"]: s for s in reply["result"]}

    try:
        h.wait_state("notified", "ready")
        h.wait_state("web", "ready")
        h.wait_state("once", "running")
        now = listed()
        assert now["notified"]["health"] == "ok"
        assert now["notified"]["health_message"] == "READY=1 on NOTIFY_SOCKET"
        assert now["notified"]["health_since"] == round(sup.core.status["notified"].ready_at, 6)
        assert now["web"]["health"] == "ok" and "connected to" in now["web"]["health_message"]
        assert now["once"]["health"] is None and now["once"]["state"] == "running"

        close.touch()
        h.wait(lambda: sup.core.health("web").state == "failing")
        failing_since = sup.core.health("web").since
        h.wait(lambda: sup.core.status["web"].probe_failures >= 2)  # a later probe failed too
        web = listed()["web"]
        assert web["state"] == "ready" and web["health"] == "failing"
        assert web["health_message"] == f"connect 127.0.0.1:{port}: ECONNREFUSED"
        assert web["health_since"] == round(failing_since, 6) and web["health_for"] >= 0.1

        gate.touch()
        h.wait_state("once", "finished")
        assert listed()["once"]["health"] is None
    finally:
        server.close()
