"""The node's serving certificate, made at start-up from the machine CA in the effective config.

Like Talos: the config carries ``machine.ca.crt`` and, on controlplane
nodes, ``machine.ca.key`` (base64 PEM); apid signs a fresh serving
certificate for the node's names and addresses each time it starts, so it
never has to be stored. A config without ``machine.ca.key`` (a worker) gets
its certificate from trustd instead (``worker_cert``).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from talos_init import pki


@dataclass(frozen=True)
class MachineCA:
    crt_pem: bytes
    key: pki.PrivateKey


def has_ca_key(config: dict[str, Any]) -> bool:
    key = ((config.get("machine") or {}).get("ca") or {}).get("key")
    return isinstance(key, str) and bool(key.strip())


def machine_ca_cert(config: dict[str, Any], where: str) -> bytes:
    """The machine CA certificate (PEM), which every node needs to verify its clients."""
    crt = ((config.get("machine") or {}).get("ca") or {}).get("crt")
    if not isinstance(crt, str) or not crt:
        raise pki.PkiError(f"{where}: machine.ca.crt is missing: apid cannot verify clients")
    crt_pem = pki.decode_field(crt, f"{where}: machine.ca.crt")
    pki.load_cert(crt_pem, f"{where}: machine.ca.crt")
    return crt_pem


def machine_ca(config: dict[str, Any], where: str) -> MachineCA:
    ca = (config.get("machine") or {}).get("ca") or {}
    if ca.get("crt") and not (isinstance(ca.get("key"), str) and ca["key"]):
        raise pki.PkiError(f"{where}: machine.ca.key is missing: this node cannot sign "
                           "certificates itself")
    crt_pem = machine_ca_cert(config, where)
    key = ca["key"]
    cert = pki.load_cert(crt_pem, f"{where}: machine.ca.crt")
    ca_key = pki.load_key(pki.decode_field(key, f"{where}: machine.ca.key"), f"{where}: machine.ca.key")
    pki.check_pair(cert, ca_key, f"{where}: machine.ca")
    return MachineCA(crt_pem, ca_key)


def load_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise pki.PkiError(f"{path}: no effective machine config (has userdata run?)") from None
    except ValueError as e:
        raise pki.PkiError(f"{path}: not JSON: {e}") from None
    if not isinstance(config, dict):
        raise pki.PkiError(f"{path}: the config must be a JSON object")
    return config


def node_names(config: dict[str, Any]) -> list[str]:
    """Names the serving certificate is valid for: hostname, loopback, addresses, certSANs."""
    machine = config.get("machine") or {}
    names: list[str] = [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    hostname = (machine.get("network") or {}).get("hostname")
    if isinstance(hostname, str):
        names.append(hostname)
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                names.append(a.address.split("%")[0])
    sans = machine.get("certSANs") or []
    names += [s for s in sans if isinstance(s, str)]
    return names


def write_serving_files(ca: MachineCA, names: Iterable[str], directory: Path) -> tuple[str, str]:
    """Sign a serving certificate and write cert and key (0600) for ssl.load_cert_chain."""
    ca_cert = pki.load_cert(ca.crt_pem, "machine CA")
    cert, key = pki.new_server_cert(ca_cert, ca.key, names)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, key_path = tempfile.mkstemp(prefix="apid-", suffix=".key", dir=directory)
    with os.fdopen(fd, "wb") as f:  # mkstemp makes it 0600
        f.write(pki.key_pem(key))
    fd, crt_path = tempfile.mkstemp(prefix="apid-", suffix=".crt", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(pki.cert_pem(cert))
    return crt_path, key_path
