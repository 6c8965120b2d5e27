"""A real trustd process on 127.0.0.1 with a test machine CA and token."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from talos_init import pki
from talos_init.apid import trustd_client

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "abcdef.0123456789abcdef"


def node_config(ca: Any, ca_key: Any, *, kind: str = "controlplane", token: str = TOKEN,
                with_key: bool = True, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    machine: dict[str, Any] = {"type": kind, "token": token,
                               "ca": {"crt": pki.encode_field(pki.cert_pem(ca)),
                                      "key": pki.encode_field(pki.key_pem(ca_key)) if with_key else ""}}
    machine.update(extra or {})
    return {"version": "v1alpha1", "machine": machine, "cluster": {"clusterName": "test"}}


def start_notified(module: str, tmp: Path, name: str, args: list[str],
                   ) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``python -m module`` and wait for its READY=1; (process, port)."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp / f"{name}-notify.sock"
    notify.bind(str(notify_path))
    notify.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    with open(tmp / f"{name}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-I", "-m", module, *args], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        message = notify.recv(4096).decode()
    except TimeoutError:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{name} did not become ready:\n{(tmp / f'{name}.log').read_text()}") from None
    finally:
        notify.close()
    status = dict(line.split("=", 1) for line in message.splitlines())["STATUS"]
    return proc, int(status.rsplit(":", 1)[-1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Trustd:
    port: int
    ca: Any
    ca_key: Any
    log: Path
    process: subprocess.Popen[bytes]

    def ask(self, params: Any, raw: bytes | None = None) -> dict[str, Any]:
        ctx = trustd_client.client_context(pki.cert_pem(self.ca).decode())
        return asyncio.run(trustd_client.call("127.0.0.1", self.port, ctx, params, raw=raw))

    def csr(self, names: list[str], *, key: Any = None, builder: Any = None) -> str:
        csr = pki.server_csr(key or pki.new_key(), "worker-1", names)
        return csr.public_bytes(serialization.Encoding.PEM).decode()


def start_trustd(tmp: Path, ca: Any, ca_key: Any, *extra: str) -> Trustd:
    config = tmp / "config.json"
    config.write_text(json.dumps(node_config(ca, ca_key)))
    proc, port = start_notified("talos_init.trustd", tmp, "trustd",
                                ["--listen", "127.0.0.1:0", "--config", str(config),
                                 "--state-dir", str(tmp / "state"), *extra])
    return Trustd(port, ca, ca_key, tmp / "trustd.log", proc)


@pytest.fixture(scope="session")
def machine_ca() -> tuple[Any, Any]:
    return pki.new_ca("test-cluster")


@pytest.fixture
def trustd(tmp_path: Path, machine_ca: tuple[Any, Any]) -> Iterator[Trustd]:
    t = start_trustd(tmp_path, *machine_ca, "--burst", "50")
    yield t
    stop(t.process)


def wait_for_text(path: Path, text: str, timeout: float = 60.0, after: int = 0) -> int:
    """Wait until ``text`` appears in the log at ``path`` past offset ``after``; its offset."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = path.read_text(errors="replace").find(text, after)
        if found >= 0:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path} within {timeout:g}s:\n{path.read_text()}")


@dataclass
class Worker:
    """A real apid without machine.ca.key in front of a fake PID 1 (the apid tests' one)."""
    tmp: Path
    config: Path
    control: Any
    supervisor: Any
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def log(self) -> Path:
        return self.tmp / "apid.log"

    @property
    def console(self) -> Path:  # apid's --kmsg: a plain file here, /dev/kmsg on a node
        return self.tmp / "kmsg"

    def start(self, trustd_port: int, *, wait_ready: bool = True) -> None:
        args = [sys.executable, "-I", "-m", "talos_init.apid", "--listen", "127.0.0.1:0",
                "--config", str(self.config), "--control-socket", str(self.control),
                "--state-dir", str(self.tmp / "state"), "--trustd", f"127.0.0.1:{trustd_port}",
                "--kmsg", str(self.console)]
        if wait_ready:
            self.process, self.port = start_notified(args[3], self.tmp, "apid", args[4:])
        else:
            with open(self.log, "wb") as log:
                self.process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def osctlconfig(self, ca: Any, ca_key: Any, roles: list[str]) -> Path:
        cert, key = pki.new_client_cert(ca, ca_key, "tester", roles)
        path = self.tmp / "osctlconfig"
        path.write_text(yaml.safe_dump({"context": "t", "contexts": {"t": {
            "endpoints": [f"127.0.0.1:{self.port}"], "ca": pki.encode_field(pki.cert_pem(ca)),
            "crt": pki.encode_field(pki.cert_pem(cert)), "key": pki.encode_field(pki.key_pem(key))}}}))
        return path


@pytest.fixture
def worker(tmp_path: Path, machine_ca: tuple[Any, Any]) -> Iterator[Worker]:
    from talos_init.control.server import ControlServer
    from tests.host.apid.conftest import FakeSupervisor
    from tests.host.control.conftest import LoopThread

    lt = LoopThread()
    lt.thread.start()
    supervisor = FakeSupervisor(lt)
    supervisor.logs = {"containerd": ["first line"]}
    server = ControlServer(lt.loop, tmp_path / "run" / "init.sock")
    supervisor.register(server)
    lt.run(server.start)
    wdir = tmp_path / "worker"
    wdir.mkdir()
    config = wdir / "config.json"
    config.write_text(json.dumps(node_config(*machine_ca, kind="worker", with_key=False)))
    w = Worker(wdir, config, server.path, supervisor)
    try:
        yield w
    finally:
        if w.process is not None:
            stop(w.process)
        lt.run(server.close)
        lt.stop()
