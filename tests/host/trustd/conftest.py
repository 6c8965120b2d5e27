"""A real trustd process on 127.0.0.1 with a test machine CA and token."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
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
    except socket.timeout:
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
