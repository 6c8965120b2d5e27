"""The supervisor's control-socket methods, over the real ControlServer on the same Loop."""

import json
import socket

import pytest

server_mod = pytest.importorskip("talos_init.control.server",
                                 reason="the control socket lands from the api branch")


def _call(h, path, method, params, items=1):
    """Send one request and run the loop until ``items`` reply lines arrived."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))
    sock.setblocking(False)
    sock.sendall(json.dumps({"v": 1, "id": 1, "method": method, "params": params}).encode() + b"\n")
    buf = bytearray()

    def readable():
        try:
            buf.extend(sock.recv(65536))
        except BlockingIOError:
            pass
    h.loop.add_reader(sock.fileno(), readable)
    try:
        h.wait(lambda: buf.count(b"\n") >= items, timeout=20)
    finally:
        h.loop.remove_reader(sock.fileno())
    return sock, [json.loads(x) for x in bytes(buf).splitlines()]


def test_list_restart_unknown_and_logs_over_the_control_socket(harness):
    """services.list, services.restart, a not_found id and a logs stream all work end to end."""
    from talos_init.service.control import register
    h = harness
    d = h.define("echo", 'print("hi there", flush=True)\nnotify("READY=1")\nsignal.pause()',
                 readiness={"notify": True})
    sup = h.supervise([d])
    server = server_mod.ControlServer(h.loop, h.paths.control_socket)
    register(server, sup)
    server.start()
    try:
        h.wait_state("echo", "ready")
        h.wait(lambda: sup.logs("echo"))
        sock, (reply,) = _call(h, h.paths.control_socket, "services.list", {})
        sock.close()
        assert [s["id"] for s in reply["result"]] == ["echo"] and reply["result"][0]["state"] == "ready"
        sock, (reply,) = _call(h, h.paths.control_socket, "services.restart", {"id": "echo"})
        sock.close()
        assert reply["result"]["state"] == "stopping" and reply["result"]["want"] == "up"
        h.wait_state("echo", "ready")
        sock, (reply,) = _call(h, h.paths.control_socket, "services.stop", {"id": "nope"})
        sock.close()
        assert reply["error"]["code"] == "not_found" and "no service 'nope'" in reply["error"]["message"]
        h.wait(lambda: len(sup.logs("echo")) == 2)
        sock, lines = _call(h, h.paths.control_socket, "logs", {"id": "echo", "tail": 1}, items=2)
        sock.close()
        assert lines[0]["item"] == {"line": "hi there"} and lines[1]["end"] is True
    finally:
        server.close()
