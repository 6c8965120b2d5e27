"""A controlplane and a worker on a private network between two QEMU guests.

Each guest has its user-mode NIC (eth0: config server and API forwards, as
for one node) and a second NIC (eth1) on a QEMU socket netdev: UDP over
127.0.0.1 from one guest's port to the other's, nothing else on that
wire. The controlplane is 192.168.100.1, the worker 192.168.100.2; the
cluster's endpoint is the controlplane's private address, so the worker's
apid finds trustd there. Used by ``make run NODES=2`` and the two-node e2e.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.nodeapi import gen_cluster
from tests.e2e.qemu import free_port

CP_ADDR, WORKER_ADDR = "192.168.100.1", "192.168.100.2"
PEER_MACS = ("52:54:00:24:00:01", "52:54:00:24:00:02")
TRUSTD_PORT = 50001


def gen_two_node_cluster(out: Path, name: str = "two-node") -> Path:
    """`osctl gen config` with the controlplane's private address as endpoint (worker: no CA key)."""
    return gen_cluster(out, name, f"https://{CP_ADDR}:6443", lone=False)


def with_network(config: dict[str, Any], hostname: str, address: str) -> bytes:
    """The machine config with DHCP on eth0 and ``address``/24 on the private eth1."""
    doc = copy.deepcopy(config)
    doc["machine"]["network"] = {
        "hostname": hostname,
        "interfaces": [{"interface": "eth0", "dhcp": True},
                       {"interface": "eth1", "addresses": [f"{address}/24"]}],
    }
    return yaml.safe_dump(doc, sort_keys=False).encode()


@dataclass(frozen=True)
class PairPlan:
    """Configs and ports for the two guests; the VMs are started by the caller."""
    controlplane: bytes
    worker: bytes
    cp_peer: tuple[str, int, int]
    worker_peer: tuple[str, int, int]
    trustd_port: int  # host port forwarded to the controlplane's :50001


def plan(cluster: Path, *, worker_config: dict[str, Any] | None = None) -> PairPlan:
    cp_doc = yaml.safe_load((cluster / "controlplane.yaml").read_text())
    worker_doc = worker_config or yaml.safe_load((cluster / "worker.yaml").read_text())
    cp_udp, worker_udp = free_udp_port(), free_udp_port()
    while worker_udp == cp_udp:
        worker_udp = free_udp_port()
    return PairPlan(with_network(cp_doc, "cp1", CP_ADDR),
                    with_network(worker_doc, "worker1", WORKER_ADDR),
                    (PEER_MACS[0], cp_udp, worker_udp), (PEER_MACS[1], worker_udp, cp_udp),
                    free_port())


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
