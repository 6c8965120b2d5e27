"""The control socket: a real server on a real Loop, real unix sockets, handlers registered by the test."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from talos_init.control.server import Limits

from .conftest import LineClient, stream_handler


def test_unary_call_returns_the_handler_result(make_server, tmp_path):
    """A registered handler's result comes back under the request id."""
    server = make_server(services__list=lambda params: [{"id": "udevd", "state": "ready"}])
    client = LineClient(server.path)
    reply = client.call("services.list", rid=42)
    assert reply == {"v": 1, "id": 42, "result": [{"id": "udevd", "state": "ready"}]}
    assert "services.list" in client.call("control.methods", rid=43)["result"]
    client.close()


def test_socket_is_root_only(make_server):
    """The socket file is mode 0600."""
    server = make_server()
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600


def test_bad_requests_get_errors_that_say_why(make_server):
    """Bad JSON, a wrong version, an unknown method and a handler's ControlError are distinct errors."""
    from talos_init.control.protocol import ControlError

    def start(params):
        raise ControlError("not_found", f"no service {params.get('id')!r}")

    server = make_server(services__start=start)
    client = LineClient(server.path)
    client.send(b"{not json\n")
    assert client.recv()["error"]["code"] == "bad_request"
    client.send({"v": 2, "id": 1, "method": "x"})
    err = client.recv()["error"]
    assert err["code"] == "unsupported_version" and "v1" in err["message"]
    assert client.call("nope")["error"] == {"code": "unknown_method", "message": "no method 'nope'"}
    reply = client.call("services.start", {"id": "ghost"}, rid=9)
    assert reply == {"v": 1, "id": 9, "error": {"code": "not_found", "message": "no service 'ghost'"}}
    client.close()


def test_handler_crash_is_an_internal_error_and_the_server_goes_on(make_server):
    """An exception in a handler is answered as internal and the next call still works."""
    def boom(params):
        raise RuntimeError("kaboom")

    server = make_server(boom=boom, ok=lambda params: "fine")
    client = LineClient(server.path)
    err = client.call("boom")["error"]
    assert err["code"] == "internal" and "kaboom" in err["message"]
    assert client.call("ok")["result"] == "fine"
    client.close()


def test_stream_sends_tail_then_follows_new_lines(make_server, loop_thread):
    """A follow stream delivers the tail, then each new line as it is produced, until the client leaves."""
    followers = []
    closed = []

    @stream_handler
    def logs(params, stream):
        for line in ["one", "two", "three"][-params["tail"]:]:
            stream.send({"line": line})
        if not params.get("follow"):
            stream.end()
            return
        followers.append(stream)
        stream.on_close(lambda: (followers.remove(stream), closed.append(True)))

    server = make_server(logs=logs)
    client = LineClient(server.path)
    client.send({"v": 1, "id": 5, "method": "logs", "params": {"tail": 2}})
    assert [client.recv() for _ in range(3)] == [
        {"v": 1, "id": 5, "item": {"line": "two"}}, {"v": 1, "id": 5, "item": {"line": "three"}},
        {"v": 1, "id": 5, "end": True}]

    client.send({"v": 1, "id": 6, "method": "logs", "params": {"tail": 1, "follow": True}})
    assert client.recv()["item"] == {"line": "three"}
    for n in range(3):
        loop_thread.run(lambda n=n: [s.send({"line": f"new {n}"}) for s in followers])
        assert client.recv() == {"v": 1, "id": 6, "item": {"line": f"new {n}"}}
    client.close()
    deadline = time.monotonic() + 10
    while not closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed == [True] and loop_thread.run(lambda: list(followers)) == []


def test_slow_client_is_dropped_and_others_are_served(make_server, loop_thread):
    """A client that never reads a big stream is disconnected; PID 1 keeps answering others."""
    @stream_handler
    def flood(params, stream):
        for _ in range(10000):
            if not stream.send("x" * 1000):
                return

    server = make_server(Limits(max_output=256 * 1024), flood=flood, ok=lambda p: "ok")
    slow = LineClient(server.path)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.send({"v": 1, "id": 1, "method": "flood", "params": {}})
    other = LineClient(server.path)
    assert other.call("ok")["result"] == "ok"
    deadline = time.monotonic() + 10
    while loop_thread.run(lambda: server.connections) != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loop_thread.run(lambda: server.connections) == 1  # only `other` is left
    assert other.call("ok")["result"] == "ok"
    slow.close()
    other.close()


def test_request_too_large_is_refused(make_server):
    """A request line beyond the limit gets too_large and the connection closes."""
    server = make_server(Limits(max_line=1024), ok=lambda p: "ok")
    client = LineClient(server.path)
    client.send(b"x" * 5000)
    err = client.recv()
    assert err["error"]["code"] == "too_large" and "1024" in err["error"]["message"]
    assert client.recv() is None
    client.close()


def test_idle_connection_is_closed(make_server):
    """A connection that sends nothing is closed after the idle timeout."""
    server = make_server(Limits(idle_timeout=0.2))
    client = LineClient(server.path)
    assert client.recv() is None
    client.close()


def test_too_many_clients_are_refused(make_server):
    """Clients beyond max_clients are told the server is overloaded."""
    server = make_server(Limits(max_clients=2), ok=lambda p: "ok")
    clients = [LineClient(server.path) for _ in range(2)]
    extra = LineClient(server.path)
    assert extra.recv()["error"]["code"] == "overloaded"
    assert clients[0].call("ok")["result"] == "ok"
    for c in [*clients, extra]:
        c.close()


def test_non_root_peer_is_refused(make_server):
    """A peer whose uid is not 0 is refused by SO_PEERCRED even if the file mode would let it in."""
    run = Path(tempfile.mkdtemp(prefix="talos-ctl-", dir="/tmp"))
    try:
        run.chmod(0o755)
        server = make_server(path=run / "init.sock", ok=lambda p: "ok")
        server.path.chmod(0o666)  # only to reach the uid check below
        # The refusal comes at once, before any request: read it without sending.
        code = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
                "print(s.makefile().readline())")
        out = subprocess.run([sys.executable, "-c", code, str(server.path)], user=65534,
                             capture_output=True, text=True, timeout=30)
        assert "permission_denied" in out.stdout and "uid 65534" in out.stdout, out
    finally:
        for p in run.iterdir():
            p.unlink()
        run.rmdir()


def test_events_follow_an_event_log(make_server, loop_thread):
    """The events method sends the tail of PID 1's EventLog, then each new event as it is recorded."""
    from talos_init.control import events as control_events
    from talos_init.events import EventLog

    log = EventLog()
    log.phase("mounts", "done")
    log.record("service", "udevd", "ready")
    server = make_server()
    loop_thread.run(lambda: control_events.register(server, log))
    client = LineClient(server.path)
    client.send({"v": 1, "id": 1, "method": "events", "params": {"tail": 1, "follow": True}})
    assert client.recv()["item"]["name"] == "udevd"
    loop_thread.run(lambda: log.record("service", "apid", "running", reason="started"))
    item = client.recv()["item"]
    assert (item["name"], item["state"], item["reason"]) == ("apid", "running", "started")
    assert [e["name"] for e in client.call("timeline", rid=2)["result"]] == ["mounts", "udevd", "apid"]
    client.close()


def test_an_open_follow_stream_costs_no_wake_ups_and_idle_counts_from_its_end(make_server,
                                                                              loop_thread):
    """While a stream follows, no idle timer wakes the loop; once it ends, the idle timeout
    closes the connection."""
    followers = []

    @stream_handler
    def events(params, stream):
        followers.append(stream)

    server = make_server(Limits(idle_timeout=0.2), events=events)
    client = LineClient(server.path)
    client.send({"v": 1, "id": 1, "method": "events", "params": {"follow": True}})
    deadline = time.monotonic() + 10
    while not loop_thread.run(lambda: list(followers)) and time.monotonic() < deadline:
        time.sleep(0.01)
    before = loop_thread.run(lambda: loop_thread.loop.wakeups)
    time.sleep(1.0)  # five idle timeouts
    # The two calls into the loop thread (this one and the one above) wake it once each.
    assert loop_thread.run(lambda: loop_thread.loop.wakeups) - before == 1
    loop_thread.run(lambda: followers[0].end())
    assert client.recv() == {"v": 1, "id": 1, "end": True}
    assert client.recv() is None  # closed 0.2 s after the stream ended
    client.close()


def test_idle_counts_from_the_last_request_and_busy_clients_add_no_timers(make_server,
                                                                          loop_thread):
    """A client asking every 0.1 s outlives a 0.3 s idle timeout; 200 calls leave one timer."""
    server = make_server(Limits(idle_timeout=0.3), ok=lambda p: "ok")
    client = LineClient(server.path)
    for n in range(10):
        assert client.call("ok", rid=n)["result"] == "ok"
        time.sleep(0.1)
    for n in range(200):
        client.call("ok", rid=n)
    assert loop_thread.run(lambda: len(loop_thread.loop._timers)) <= 2
    assert client.recv() is None  # then idle: closed
    client.close()
