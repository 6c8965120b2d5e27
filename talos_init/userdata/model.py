"""The typed machine config: the fields this node acts on, read from the effective JSON.

``MachineConfig.from_effective(d)`` takes the normalized v1alpha1-shaped dict that
``validate`` produces (and that ``/run/talos/config.json`` holds), so networkd, apid
and the kubelet preparation can load the file they read with ``load_effective``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class CertAndKey:
    crt: bytes  # PEM
    key: bytes | None  # PEM; None on workers

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CertAndKey:
        key = d.get("key") or ""
        return cls(base64.b64decode(d["crt"]), base64.b64decode(key) if key else None)


@dataclass(frozen=True)
class Route:
    network: IPNetwork  # 0.0.0.0/0 or ::/0 for a default route
    gateway: IPAddress | None
    source: IPAddress | None = None
    metric: int | None = None
    mtu: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Route:
        return cls(
            network=ipaddress.ip_network(d["network"]),
            gateway=ipaddress.ip_address(d["gateway"]) if d.get("gateway") else None,
            source=ipaddress.ip_address(d["source"]) if d.get("source") else None,
            metric=d.get("metric"),
            mtu=d.get("mtu"),
        )


@dataclass(frozen=True)
class Vlan:
    vlan_id: int
    addresses: tuple[IPInterface, ...] = ()
    routes: tuple[Route, ...] = ()
    dhcp: bool = False
    mtu: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vlan:
        return cls(
            d["vlanId"],
            tuple(ipaddress.ip_interface(a) for a in d.get("addresses", [])),
            tuple(Route.from_dict(r) for r in d.get("routes", [])),
            bool(d.get("dhcp")),
            d.get("mtu"),
        )


@dataclass(frozen=True)
class DeviceSelector:
    """Wildcard patterns (fnmatch) a link must all match."""

    hardware_addr: str | None = None
    permanent_addr: str | None = None
    bus_path: str | None = None
    pci_id: str | None = None
    driver: str | None = None
    physical: bool | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceSelector:
        return cls(
            d.get("hardwareAddr"),
            d.get("permanentAddr"),
            d.get("busPath"),
            d.get("pciID"),
            d.get("driver"),
            d.get("physical"),
        )


@dataclass(frozen=True)
class Interface:
    name: str | None  # exactly one of name and selector is set
    selector: DeviceSelector | None
    dhcp: bool = False
    addresses: tuple[IPInterface, ...] = ()
    routes: tuple[Route, ...] = ()
    mtu: int | None = None
    vlans: tuple[Vlan, ...] = ()
    ignore: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Interface:
        sel = d.get("deviceSelector")
        return cls(
            name=d.get("interface"),
            selector=DeviceSelector.from_dict(sel) if sel is not None else None,
            dhcp=bool(d.get("dhcp")),
            addresses=tuple(ipaddress.ip_interface(a) for a in d.get("addresses", [])),
            routes=tuple(Route.from_dict(r) for r in d.get("routes", [])),
            mtu=d.get("mtu"),
            vlans=tuple(Vlan.from_dict(v) for v in d.get("vlans", [])),
            ignore=bool(d.get("ignore")),
        )


@dataclass(frozen=True)
class Network:
    hostname: str | None = None
    interfaces: tuple[Interface, ...] = ()
    nameservers: tuple[IPAddress, ...] = ()
    search_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtraMount:
    destination: str
    source: str
    type: str = "bind"
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kubelet:
    extra_args: dict[str, str | list[str]] = field(default_factory=dict)
    extra_mounts: tuple[ExtraMount, ...] = ()
    node_ip_subnets: tuple[str, ...] = ()  # CIDRs, "!" prefix excludes
    cluster_dns: tuple[IPAddress, ...] = ()


@dataclass(frozen=True)
class MachineFile:
    path: str
    content: str
    permissions: int
    op: str  # create | append | overwrite


@dataclass(frozen=True)
class Machine:
    type: str  # controlplane | worker
    token: str
    ca: CertAndKey
    network: Network
    install_disk: str | None
    install_wipe: bool
    kubelet: Kubelet
    sysctls: dict[str, str]
    files: tuple[MachineFile, ...]
    env: dict[str, str]
    time_servers: tuple[str, ...]


@dataclass(frozen=True)
class Cluster:
    endpoint: str
    name: str | None
    ca: CertAndKey
    token: str
    dns_domain: str
    pod_subnets: tuple[IPNetwork, ...]
    service_subnets: tuple[IPNetwork, ...]
    cni: str  # flannel | custom | none
    cni_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class MachineConfig:
    machine: Machine
    cluster: Cluster
    effective: dict[str, Any]  # the normalized v1alpha1-shaped document (what config.json holds)

    @classmethod
    def from_effective(cls, d: dict[str, Any]) -> MachineConfig:
        m, c = d["machine"], d["cluster"]
        net, kub = m.get("network", {}), m.get("kubelet", {})
        cnet = c.get("network", {})
        machine = Machine(
            type=m["type"],
            token=m["token"],
            ca=CertAndKey.from_dict(m["ca"]),
            network=Network(
                hostname=net.get("hostname"),
                interfaces=tuple(Interface.from_dict(i) for i in net.get("interfaces", [])),
                nameservers=tuple(ipaddress.ip_address(a) for a in net.get("nameservers", [])),
                search_domains=tuple(net.get("searchDomains", [])),
            ),
            install_disk=m.get("install", {}).get("disk"),
            install_wipe=bool(m.get("install", {}).get("wipe", False)),
            kubelet=Kubelet(
                extra_args=dict(kub.get("extraArgs", {})),
                extra_mounts=tuple(
                    ExtraMount(
                        x["destination"],
                        x.get("source", ""),
                        x.get("type", "bind"),
                        tuple(x.get("options", [])),
                    )
                    for x in kub.get("extraMounts", [])
                ),
                node_ip_subnets=tuple(kub.get("nodeIP", {}).get("validSubnets", [])),
                cluster_dns=tuple(ipaddress.ip_address(a) for a in kub.get("clusterDNS", [])),
            ),
            sysctls=dict(m.get("sysctls", {})),
            files=tuple(
                MachineFile(f["path"], f["content"], f["permissions"], f["op"])
                for f in m.get("files", [])
            ),
            env=dict(m.get("env", {})),
            time_servers=tuple(m.get("time", {}).get("servers", [])),
        )
        cluster = Cluster(
            endpoint=c["controlPlane"]["endpoint"],
            name=c.get("clusterName"),
            ca=CertAndKey.from_dict(c["ca"]),
            token=c["token"],
            dns_domain=cnet.get("dnsDomain", "cluster.local"),
            pod_subnets=tuple(ipaddress.ip_network(n) for n in cnet.get("podSubnets", [])),
            service_subnets=tuple(ipaddress.ip_network(n) for n in cnet.get("serviceSubnets", [])),
            cni=cnet.get("cni", {}).get("name", "flannel"),
            cni_urls=tuple(cnet.get("cni", {}).get("urls", [])),
        )
        return cls(machine, cluster, d)


def load_effective(path: str | Path) -> MachineConfig:
    """Read ``/run/talos/config.json`` (written only after validation) into typed form."""
    return MachineConfig.from_effective(json.loads(Path(path).read_text()))
