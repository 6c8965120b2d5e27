"""A real apid process on 127.0.0.1 in front of a real control server with test-registered handlers."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from talos_init import pki
from talos_init.control import events as control_events
from talos_init.control.protocol import NOT_FOUND, ControlError
from talos_init.apid.containerd import Client
from talos_init.control.server import ControlServer, Stream
from talos_init.events import EventLog
from tests.host.control.conftest import LoopThread

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Pki:
    ca: Any
    ca_key: Any
    other_ca: Any
    other_ca_key: Any


@pytest.fixture(scope="session")
def certs() -> Pki:
    ca, ca_key = pki.new_ca("test-cluster")
    other, other_key = pki.new_ca("someone-else")
    return Pki(ca, ca_key, other, other_key)


@dataclass
class FakeSupervisor:
    """The PID 1 side as the test sees it: handlers on a real control server, state in memory."""

    loop_thread: LoopThread
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, list[str]] = field(default_factory=dict)
    followers: list[tuple[str, Stream]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    events: EventLog = field(default_factory=EventLog)

    def register(self, server: ControlServer) -> None:
        def service(params: dict[str, Any]) -> dict[str, Any]:
            svc = self.services.get(params.get("id", ""))
            if svc is None:
                raise ControlError(NOT_FOUND, f"no service {params.get('id')!r}")
            return svc

        def action(name: str):
            def handler(params: dict[str, Any]) -> dict[str, Any]:
                svc = service(params)
                self.actions.append(f"{name} {svc['id']}")
                self.events.record("service", svc["id"], "stopping" if name == "stop" else "starting")
                return svc
            return handler

        def logs(params: dict[str, Any], stream: Stream) -> None:
            lines = self.logs.get(params["id"])
            if lines is None:
                raise ControlError(NOT_FOUND, f"no service {params['id']!r}")
            tail = params.get("tail")
            for line in lines[-tail:] if tail else lines:
                stream.send({"line": line})
            if not params.get("follow"):
                stream.end()
                return
            entry = (params["id"], stream)
            self.followers.append(entry)
            stream.on_close(lambda: self.followers.remove(entry))

        def power(name: str):
            def handler(params: dict[str, Any]) -> dict[str, Any]:
                self.actions.append(name)
                return {"accepted": True}
            return handler

        server.register("services.list", lambda params: list(self.services.values()))
        for name in ("start", "stop", "restart"):
            server.register(f"services.{name}", action(name))
        server.register_stream("logs", logs)
        server.register("reboot", power("reboot"))
        server.register("shutdown", power("shutdown"))
        control_events.register(server, self.events)

    def write_log(self, service: str, line: str) -> None:
        """Append a log line in the loop thread and hand it to followers, as PID 1 would."""
        def write() -> None:
            self.logs.setdefault(service, []).append(line)
            for sid, stream in list(self.followers):
                if sid == service:
                    stream.send({"line": line})
        self.loop_thread.run(write)

    def follower_count(self) -> int:
        return self.loop_thread.run(lambda: len(self.followers))


@dataclass
class Node:
    host: str
    port: int
    tmp: Path
    certs: Pki
    supervisor: FakeSupervisor
    process: subprocess.Popen[bytes]
    containerd_dir: Path  # short: a unix socket path must fit in 108 bytes

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def client_files(self, name: str, roles: list[str], *, ca: str = "machine",
                     expired: bool = False) -> tuple[bytes, bytes]:
        signer, signer_key = ((self.certs.ca, self.certs.ca_key) if ca == "machine"
                              else (self.certs.other_ca, self.certs.other_ca_key))
        kwargs: dict[str, Any] = {}
        if expired:
            now = datetime.datetime.now(datetime.UTC)
            kwargs = {"not_before": now - datetime.timedelta(days=30),
                      "not_after": now - datetime.timedelta(days=1)}
        cert, key = pki.new_client_cert(signer, signer_key, name, roles, **kwargs)
        return pki.cert_pem(cert), pki.key_pem(key)

    def osctlconfig(self, name: str, roles: list[str], *, with_cert: bool = True,
                    ca: str = "machine", expired: bool = False, trust: Any = None) -> Path:
        ctx: dict[str, Any] = {"endpoints": [self.target],
                               "ca": pki.encode_field(pki.cert_pem(trust or self.certs.ca))}
        if with_cert:
            crt, key = self.client_files(name, roles, ca=ca, expired=expired)
            ctx["crt"], ctx["key"] = pki.encode_field(crt), pki.encode_field(key)
        path = self.tmp / f"osctl-{name}.yaml"
        path.write_text(yaml.safe_dump({"context": "test", "contexts": {"test": ctx}}))
        return path

    def osctl(self, config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "talos_init.osctl", "--osctlconfig", str(config),
                               *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def start_apid(tmp: Path, config: Path, control: Path, *extra_args: str,
               ) -> tuple[subprocess.Popen[bytes], str, int]:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp / "notify.sock"
    notify.bind(str(notify_path))
    notify.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    log = open(tmp / "apid.log", "wb")  # a file, not a pipe: nobody reads apid's log while it runs
    proc = subprocess.Popen(
        [sys.executable, "-I", "-m", "talos_init.apid", "--listen", "127.0.0.1:0",
         "--config", str(config), "--control-socket", str(control), "--state-dir", str(tmp / "state"), *extra_args],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        message = notify.recv(4096).decode()
    except TimeoutError:
        proc.kill()
        proc.wait()
        raise AssertionError(f"apid did not become ready:\n{(tmp / 'apid.log').read_text()}") from None
    finally:
        notify.close()
    assert "READY=1" in message, message
    status = dict(line.split("=", 1) for line in message.splitlines())["STATUS"]
    host, port = status.rsplit(" ", 1)[-1].rsplit(":", 1)
    return proc, host, int(port)


@pytest.fixture
def node(tmp_path: Path, certs: Pki) -> Iterator[Node]:
    lt = LoopThread()
    lt.thread.start()
    supervisor = FakeSupervisor(lt)
    supervisor.services = {
        "containerd": {"id": "containerd", "state": "ready", "health": "ok", "pid": os.getpid(),
                       "uptime": 12.5, "restarts": 0, "reason": ""},
        "kubelet": {"id": "kubelet", "state": "backoff", "health": None, "pid": None,
                    "uptime": None, "restarts": 3, "reason": "exited with code 1"},
    }
    supervisor.logs = {"containerd": [f"containerd line {i}" for i in range(5)]}
    supervisor.events.phase("mounts", "done")
    supervisor.events.record("service", "containerd", "ready")
    server = ControlServer(lt.loop, tmp_path / "run" / "init.sock")
    supervisor.register(server)
    lt.run(server.start)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"version": "v1alpha1", "machine": {
        "type": "worker", "token": "abcdef.0123456789abcdef",
        "ca": {"crt": pki.encode_field(pki.cert_pem(certs.ca)),
               "key": pki.encode_field(pki.key_pem(certs.ca_key))}},
        "cluster": {"clusterName": "test", "token": "secret.token"}}))
    config.chmod(0o600)
    ctd = Path(tempfile.mkdtemp(prefix="ctd-", dir="/tmp"))
    proc, host, port = start_apid(tmp_path, config, server.path,
                                  "--containerd-socket", str(ctd / "containerd.sock"),
                                  "--containerd-root", str(ctd / "root"))
    try:
        yield Node(host, port, tmp_path, certs, supervisor, proc, ctd)
    finally:
        shutil.rmtree(ctd, ignore_errors=True)
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        lt.run(server.close)
        lt.stop()


CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
"""


@pytest.fixture
def containerd(node):
    """A real containerd (no CRI) on the socket the node's apid was given."""
    binary = shutil.which("containerd")
    if binary is None:
        pytest.fail("containerd is not installed (tools/apt-packages.txt lists it)")
    d = node.containerd_dir
    (d / "config.toml").write_text(CONFIG.format(d=d))
    with open(d / "log", "wb") as log:
        proc = subprocess.Popen([binary, "--config", str(d / "config.toml")], stdout=log,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not (d / "containerd.sock").exists():
        assert proc.poll() is None and time.monotonic() < deadline, (d / "log").read_text()
        time.sleep(0.05)
    yield Client(str(d / "containerd.sock"))
    proc.terminate()
    proc.wait(timeout=30)
