"""Registry mirrors as the real containerd reads them: skipFallback keeps every pull off upstream.

The "upstream" registry is a loopback port that only counts connections; the mirror is a
loopback HTTP server answering 503 to everything. The image is named after the upstream
port, so containerd's own fallback (a hosts.toml without `server`) would connect there.
"""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from talos_init.containerd import grpc
from talos_init.containerd.config import write_hosts


class FailingMirror(http.server.BaseHTTPRequestHandler):
    paths: list[str]

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.paths.append(self.path)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    """An HTTP server on loopback that fails every request; yields (port, paths requested)."""
    paths: list[str] = []
    handler = type("Handler", (FailingMirror,), {"paths": paths})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def upstream():
    """A listener standing for the upstream registry; yields (port, registry requests seen):
    the first bytes of each connection that speaks http to /v2/ (containerd's own fallback for
    a loopback registry) or starts a TLS handshake (a `server = "https://..."`). Anything else
    (on a shared machine, another test's client probing a port it picked) does not count."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[bytes] = []

    def accept():
        while True:
            try:
                conn, _peer = sock.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if b"/v2/" in data or data[:2] == b"\x16\x03":
                accepted.append(data[:80])
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield sock.getsockname()[1], accepted
    finally:
        sock.close()


def pull(socket_path, ref: str) -> str:
    """CRI PullImage; the error containerd returns (the pull must fail here)."""
    request = grpc.field(1, grpc.field(1, ref))  # PullImageRequest.image = ImageSpec{image}
    with pytest.raises(grpc.GrpcError) as err:
        grpc.Client(str(socket_path), timeout=120).call(
            "/runtime.v1.ImageService/PullImage", request, "k8s.io")
    return err.value.message


@pytest.mark.parametrize("skip_fallback", [True, False])
def test_skip_fallback_never_reaches_upstream(tmp_path, containerd, mirror, upstream,
                                              skip_fallback):
    """With skipFallback a failing mirror ends the pull and upstream gets no connection; without
    it containerd falls back to upstream (which shows the stand-in would see a leak)."""
    mirror_port, mirror_paths = mirror
    upstream_port, accepted = upstream
    registry = f"127.0.0.1:{upstream_port}"
    write_hosts({"machine": {"registries": {"mirrors": {registry: {
        "endpoints": [f"http://127.0.0.1:{mirror_port}"], "skipFallback": skip_fallback}}}}},
        tmp_path / "certs.d")  # the config_path of the fixture's containerd
    message = pull(containerd, f"{registry}/library/app:1")
    assert mirror_paths, f"the mirror was never asked: {message}"
    assert all(p.startswith("/v2/") for p in mirror_paths), mirror_paths
    if skip_fallback:
        assert accepted == [], f"upstream got {len(accepted)} request(s): {accepted} {message}"
    else:
        assert accepted, f"containerd did not fall back to upstream: {message}"
