"""Fixtures that boot the real image in QEMU.

- ``image``: built once per session with ``python -m initramfs.build``, reused
  while the inputs' content hash (``initramfs.build.input_digest``) is unchanged.
- ``userdata_server``: a loopback HTTP server per test; the guest reaches it at
  http://10.0.2.100/ through QEMU ``guestfwd`` (user networking, restrict=on).
- ``boot``: a factory that starts VMs and always kills them; every failing test
  gets the serial console of the VMs it used attached to its report.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from initramfs.build import ensure_built
from tests.e2e.overlay import with_files
from tests.e2e.qemu import VM, VMSpec, free_port

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("TALOS_BUILD_DIR", REPO / "build"))
PROBE = Path(__file__).with_name("probe") / "init"



def pytest_collection_modifyitems(items) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.e2e)


@dataclass(frozen=True)
class Image:
    kernel: Path
    initrd: Path
    manifest: Path
    digest: str


def build_image(out: Path = BUILD) -> Image:
    """Build the image unless one from the same inputs is already there."""
    ensure_built(out)
    return Image(out / "vmlinuz", out / "initramfs.img", out / "manifest.txt",
                 (out / "input-digest").read_text())


@pytest.fixture(scope="session")
def image() -> Image:
    return build_image()


@pytest.fixture(scope="session")
def probe_image(image: Image, tmp_path_factory) -> Image:
    """The image with tests/e2e/probe/init as /init: proves the image before PID 1 exists."""
    out = tmp_path_factory.mktemp("probe") / "initramfs-probe.img"
    with_files(image.initrd, out, {"/init": (PROBE.read_bytes(), 0o755)})
    return Image(image.kernel, out, image.manifest, image.digest)


@dataclass
class UserdataServer:
    """Serves ``body`` at every path on 127.0.0.1; records the paths asked for."""
    body: bytes = b""
    status: int = 200
    requests: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def guest_url(self) -> str:
        return "http://10.0.2.100/config.yaml"


def _serve(state: UserdataServer) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state.requests.append(self.path)
            self.send_response(state.status)
            self.send_header("Content-Type", "application/yaml")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, name="userdata-http", daemon=True).start()
    return server


def default_config() -> bytes:
    config = REPO / "configs" / "worker.yaml"
    return config.read_bytes() if config.exists() else b"version: v1alpha1\nmachine:\n  type: worker\n"


@pytest.fixture
def userdata_server() -> Iterator[UserdataServer]:
    state = UserdataServer(body=default_config())
    server = _serve(state)
    yield state
    server.shutdown()
    server.server_close()


_VMS_BY_NODE: dict[str, list[VM]] = {}


class Booter:
    """Starts VMs for one test or module and kills them all at teardown."""

    def __init__(self, workdir: Path, owner: str):
        self.workdir = workdir
        self.owner = owner
        self.vms: list[VM] = []

    def __call__(self, image: Image, *, cmdline: list[str] = (), server: UserdataServer | None = None,
                 api: bool = False, **spec) -> VM:
        extra = list(cmdline)
        if server is not None:
            extra.append(f"talos.config={server.guest_url}")
        vm = VM(VMSpec(image.kernel, image.initrd, self.workdir / f"vm{len(self.vms)}", cmdline=extra,
                       config_port=server.port if server else None,
                       api_port=free_port() if api else None, **spec))
        self.vms.append(vm)
        _VMS_BY_NODE.setdefault(self.owner, []).append(vm)
        return vm.start()

    def close(self) -> None:
        for vm in self.vms:
            vm.close()


@pytest.fixture
def boot(request, tmp_path) -> Iterator[Booter]:
    booter = Booter(tmp_path, request.node.nodeid)
    yield booter
    booter.close()


@pytest.fixture(scope="module")
def module_boot(request, tmp_path_factory) -> Iterator[Booter]:
    booter = Booter(tmp_path_factory.mktemp("vm"), request.module.__name__)
    yield booter
    booter.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for key in (item.nodeid, item.module.__name__):
            for vm in _VMS_BY_NODE.get(key, []):
                if vm.log_path.exists():
                    lines = vm.log_path.read_text(errors="replace").splitlines()
                    report.sections.append((f"serial console {vm.log_path} (last 300 lines)",
                                            "\n".join(lines[-300:])))
