"""Probes on the Loop against real sockets on 127.0.0.1: refused, silent, and HTTP status."""

import socket
import threading

from talos_init.loop import Loop
from talos_init.service.definition import Probe
from talos_init.service.probes import Prober


def _first_result(probe):
    loop = Loop()
    results = []
    prober = Prober(loop, probe, lambda ok, msg: results.append((ok, msg)))
    prober.start()
    try:
        assert loop.run_until(lambda: results, timeout=10)
    finally:
        prober.stop()
        loop.close()
    return results[0]


def test_refused_and_silent_servers_fail_with_the_reason():
    """A closed port fails at once; a server that accepts but never answers times out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert _first_result(Probe("tcp", f"127.0.0.1:{closed}")) == \
        (False, f"connect 127.0.0.1:{closed}: ECONNREFUSED")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        ok, msg = _first_result(Probe("http", f"http://127.0.0.1:{port}/healthz", timeout=0.2))
    assert (ok, msg) == (False, "timed out after 0.2s")


def test_http_status_decides_and_unix_connects(tmp_path):
    """HTTP 500 is a failure naming the status; a listening unix socket is success."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]

        def answer():
            conn, _ = srv.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
        t = threading.Thread(target=answer)  # the server side only; the probe itself is on the Loop
        t.start()
        result = _first_result(Probe("http", f"http://127.0.0.1:{port}/x?y=1"))
        t.join()
    assert result == (False, f"GET http://127.0.0.1:{port}/x?y=1: HTTP 500")
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as u:
        u.bind(str(path))
        u.listen()
        assert _first_result(Probe("unix", str(path))) == (True, f"connected to {path}")
