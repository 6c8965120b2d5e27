"""The REAL containerd on our static config: READY=1 itself, CRI loaded, and registry hosts
written after it started are used by its next pull (no restart), as machine-setup relies on."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading

from talos_init.apid.containerd import Client, GrpcError
from talos_init.containerd.config import write_hosts
from tests.host.realcontainerd import REPO, containerd_argv, stop, wait_ready


def test_real_containerd_starts_from_the_static_config_and_notifies(tmp_path, short_dir):
    """Started as the service starts it (no launcher), it serves its socket with CRI and READY=1."""
    notify_path = short_dir / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    argv, address = containerd_argv(tmp_path, short_dir)
    proc = subprocess.Popen(argv, env=dict(os.environ, NOTIFY_SOCKET=str(notify_path)), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        messages = wait_ready(notify, timeout=90)
        assert address.is_socket()
        r = subprocess.run(["ctr", "--address", str(address), "plugins", "ls"],
                           capture_output=True, text=True, timeout=30)
        cri = [line for line in r.stdout.splitlines() if "io.containerd.grpc.v1" in line
               and " cri " in f" {line} "]
        assert cri and cri[0].split()[-1] == "ok", r.stdout
        assert any("READY=1" in m for m in messages)
    finally:
        out = stop(proc)
        notify.close()
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]


def _pull_request(image: str) -> bytes:
    """CRI PullImageRequest{image: ImageSpec{image}} in protobuf wire format."""
    spec = b"\x0a" + bytes([len(image)]) + image.encode()
    return b"\x0a" + bytes([len(spec)]) + spec


def test_hosts_written_after_start_are_used_by_the_next_pull(tmp_path, containerd):
    """A mirror written into config_path after containerd is ready gets CRI's next pull."""
    seen: list[str] = []

    class Mirror(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.path)
            self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mirror)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The registry itself is a closed loopback port: nothing leaves this host even on fallback.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        registry = f"127.0.0.1:{s.getsockname()[1]}"
    try:
        write_hosts({"machine": {"registries": {"mirrors": {registry: {
            "endpoints": [f"http://127.0.0.1:{server.server_address[1]}"]}}}}},
            tmp_path / "certs.d")
        client = Client(str(containerd), timeout=60)
        try:
            client.call("/runtime.v1.ImageService/PullImage",
                        _pull_request(f"{registry}/library/app:1"), "k8s.io")
            raise AssertionError("the pull cannot succeed: the mirror answers 404")
        except GrpcError:
            pass
        assert any(p.startswith("/v2/library/app/manifests/1") for p in seen), seen
    finally:
        server.shutdown()
        server.server_close()
