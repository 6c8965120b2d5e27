"""The multi-document kinds folded into the one v1alpha1 shape consumers read.

Talos 1.14+ moves fields out of the v1alpha1 document into kinds of their own
(``KubeletConfig``, ``LinkConfig``, ``SysctlConfig``...). Each acted-on kind is written
here into the v1alpha1 field whose consumer already acts on it, so networkd, the kubelet
preparation, containerd's hosts.toml and the sysctls read one shape whichever layout
the operator wrote. Talos' own refusals of a field set in both places
(``V1Alpha1ConflictValidate`` of each kind in pkg/machinery/config/types/) are mirrored
by ``conflicts``, naming both places.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from talos_init.userdata.spec import WARNING, Path, Walk


@dataclass
class Doc:
    """One checked multi-document: its kind, name (named kinds) and where it starts."""

    kind: str
    name: str | None
    prefix: Path  # the path its problems are reported under
    value: dict[str, Any]
    where: tuple[int, int]


def _present(doc: Any, dotted: str, truthy: bool) -> bool:
    for key in dotted.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return False
        doc = doc[key]
    return bool(doc) if truthy else doc is not None


# kind -> (v1alpha1 path, whether only a non-empty value conflicts, the kind's own field).
# From each kind's V1Alpha1ConflictValidate in Talos (k8s/*.go, network/*.go, cri/*.go,
# cluster/*.go, runtime/unattended_install.go). Talos refuses whatever the document sets;
# the error points at the kind's own field when the document has it, else at the document.
CONFLICTS: dict[str, list[tuple[str, bool, str | None]]] = {
    "HostnameConfig": [
        ("machine.network.hostname", True, "hostname"),  # network/hostname.go
        ("machine.features.stableHostname", True, "auto"),
    ],
    "ResolverConfig": [  # network/resolver.go
        ("machine.network.searchDomains", False, "searchDomains"),
        ("machine.network.nameservers", False, "nameservers"),
        ("machine.network.disableSearchDomain", True, "searchDomains"),
        ("machine.features.hostDNS", False, "hostDNS"),  # only if the document sets it
    ],
    "TimeSyncConfig": [  # network/time_sync.go
        ("machine.time.disabled", True, None),
        ("machine.time.servers", True, None),
    ],
    "KubeletConfig": [("machine.kubelet", False, None)],  # k8s/kubelet.go
    "KubeCredentialProviderConfig": [("machine.kubelet", False, None)],
    "KubeClusterConfig": [  # k8s/cluster.go
        ("cluster.clusterName", True, "clusterName"),
        ("cluster.controlPlane.endpoint", False, "endpoint"),
    ],
    "KubeAPIServerCAConfig": [("cluster.ca", False, None)],  # k8s/apiserver_ca.go
    "KubeAggregatorCAConfig": [("cluster.aggregatorCA", False, None)],
    "KubeServiceAccountConfig": [("cluster.serviceAccount", False, None)],
    "KubeAPIServerConfig": [
        ("cluster.apiServer", False, None),
        ("cluster.controlPlane.localAPIServerPort", True, None),
    ],
    "KubeControllerManagerConfig": [
        ("cluster.controllerManager", False, None),
        ("machine.controlPlane.controllerManager", False, None),
    ],
    "KubeSchedulerConfig": [
        ("cluster.scheduler", False, None),
        ("machine.controlPlane.scheduler", False, None),
    ],
    "KubeCoreDNSConfig": [("cluster.coreDNS", False, None)],
    "KubeProxyConfig": [("cluster.proxy", False, None)],
    "KubeNetworkConfig": [("cluster.network", False, None)],  # k8s/network.go
    "KubeFlannelCNIConfig": [("cluster.network", False, None)],
    "KubeEtcdEncryptionConfig": [
        ("cluster.secretboxEncryptionSecret", True, None),
        ("cluster.aescbcEncryptionSecret", True, None),
    ],
    "KubePrismConfig": [("machine.features.kubePrism", False, None)],
    "KubeTalosAPIAccessConfig": [("machine.features.kubernetesTalosAPIAccess", False, None)],
    "KubeNodeConfig": [  # k8s/node.go
        ("cluster.allowSchedulingOnControlPlanes", False, None),
        ("cluster.allowSchedulingOnMasters", False, None),
        ("machine.kubelet.skipNodeRegistration", False, "skipNodeRegistration"),
        ("machine.kubelet.registerWithFQDN", False, "registerWithFQDN"),
        ("machine.kubelet.nodeIP", False, "nodeIP"),
        ("machine.nodeLabels", False, "labels"),
        ("machine.nodeAnnotations", False, "annotations"),
        ("machine.nodeTaints", False, "taints"),
    ],
    "KubeSpanConfig": [("machine.network.kubespan", False, None)],  # network/kubespan.go
    "DiscoveryServiceConfig": [("cluster.discovery", False, None)],  # cluster/*.go
    "DiscoveryIdentityConfig": [("cluster.id", True, None), ("cluster.secret", True, None)],
    "ImageCacheConfig": [("machine.features.imageCache", False, None)],  # cri/image_cache.go
    "CRIBaseRuntimeSpecConfig": [("machine.baseRuntimeSpecOverrides", False, None)],
    "UnattendedInstallConfig": [("machine.install", False, None)],  # runtime/unattended_install.go
}


def _mark(walk: Walk, path: Path) -> tuple[int, int]:
    while path and path not in walk.marks:
        path = path[:-1]
    return walk.marks.get(path, (1, 1))


def conflicts(main: dict[str, Any], docs: list[Doc], walk: Walk) -> None:
    """A field set in v1alpha1 and in its new document: refused, as Talos does."""
    for doc in docs:
        for v1path, truthy, own in CONFLICTS.get(doc.kind, []):
            if v1path == "machine.features.hostDNS" and not doc.value.get("hostDNS"):
                continue
            if not _present(main, v1path, truthy):
                continue
            line, col = _mark(walk, tuple(v1path.split(".")))
            own = own if own in doc.value else None
            here = doc.prefix + ((own,) if own else ())
            walk.error(
                here,
                _mark(walk, here) if own else doc.where,
                f"conflicts with {v1path} of the v1alpha1 document (line {line}, column {col}): "
                "Talos refuses the same setting in both places; keep one",
            )


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


def _route(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"network": r.get("destination", "")}
    for key in ("gateway", "source", "metric", "mtu"):
        if key in r:
            out[key] = r[key]
    if not out["network"] and "gateway" not in out:
        out["network"] = "0.0.0.0/0"  # a default route on the link itself
    return out


def _link_parts(doc: dict[str, Any], target: dict[str, Any]) -> None:
    addresses = target.setdefault("addresses", [])
    for a in doc.get("addresses", []):
        if a["address"] not in addresses:
            addresses.append(a["address"])
    target.setdefault("routes", []).extend(_route(r) for r in doc.get("routes", []))
    if "mtu" in doc:
        target["mtu"] = doc["mtu"]


# The CEL forms of Talos' LinkAliasConfig examples, per condition (joined by &&):
# mac(link.permanent_addr) == "..", glob("..", mac(link.hardware_addr)), link.driver == "..".
_LINK_FIELDS = {"permanent_addr": "permanentAddr", "hardware_addr": "hardwareAddr",
                "driver": "driver", "bus_path": "busPath", "pci_id": "pciID"}
_SUBJECT = r'(?:mac\(\s*link\.(?P<m>\w+)\s*\)|link\.(?P<f>\w+))'
_EQUALS = re.compile(rf'{_SUBJECT}\s*==\s*"(?P<v>[^"*?]*)"')
_GLOB = re.compile(rf'glob\(\s*"(?P<v>[^"]*)"\s*,\s*{_SUBJECT}\s*\)')


def alias_selector(match: str) -> dict[str, str] | None:
    """A deviceSelector for a LinkAliasConfig CEL expression, or None when it has another form."""
    selector: dict[str, str] = {}
    for cond in match.split("&&"):
        found = _EQUALS.fullmatch(cond.strip()) or _GLOB.fullmatch(cond.strip())
        if not found:
            return None
        field = found["m"] or found["f"]
        is_mac = found["m"] is not None
        if field not in _LINK_FIELDS or is_mac != field.endswith("_addr"):
            return None
        selector[_LINK_FIELDS[field]] = found["v"].lower() if is_mac else found["v"]
    return selector


class _Folder:
    def __init__(self, eff: dict[str, Any]) -> None:
        self.eff = eff
        self.aliases: dict[str, dict[str, str]] = {}  # LinkAliasConfig name -> deviceSelector
        self.machine = eff.setdefault("machine", {})
        self.cluster = eff.setdefault("cluster", {})
        self.network = self.machine.setdefault("network", {})
        self.vlans: dict[str, dict[str, Any]] = {}  # VLANConfig name -> its v1alpha1 entry

    def iface(self, name: str) -> dict[str, Any]:
        interfaces = self.network.setdefault("interfaces", [])
        selector = self.aliases.get(name)
        for entry in interfaces:
            if selector is None and entry.get("interface") == name:
                return entry
            if selector is not None and entry.get("deviceSelector") == selector:
                return entry
        entry = {"interface": name} if selector is None else {"deviceSelector": dict(selector)}
        interfaces.append(entry)
        return entry

    def fold(self, doc: Doc) -> None:
        getattr(self, "fold_" + doc.kind, lambda d: None)(doc.value)

    def fold_LinkAliasConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        selector = alias_selector(d["selector"]["match"])
        if selector is not None and "%" not in d["name"]:
            self.aliases[d["name"]] = selector

    def fold_HostnameConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        if "hostname" in d:
            self.network["hostname"] = d["hostname"]

    def fold_ResolverConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        if "nameservers" in d:
            self.network["nameservers"] = [n["address"] for n in d["nameservers"]]
        domains = d.get("searchDomains", {})
        if "domains" in domains:
            self.network["searchDomains"] = domains["domains"]
        if domains.get("disableDefault"):
            self.network["disableSearchDomain"] = True
        if "hostDNS" in d:
            self.machine.setdefault("features", {})["hostDNS"] = d["hostDNS"]

    def fold_TimeSyncConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        time = self.machine.setdefault("time", {})
        if "servers" in d.get("ntp", {}):
            time["servers"] = d["ntp"]["servers"]
        if d.get("enabled") is False:
            time["disabled"] = True
        if "bootTimeout" in d:
            time["bootTimeout"] = d["bootTimeout"]

    def fold_KubeletConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        kubelet = self.machine.setdefault("kubelet", {})
        for src, dst in (
            ("image", "image"),
            ("extraArgs", "extraArgs"),
            ("clusterDNS", "clusterDNS"),
            ("config", "extraConfig"),
            ("defaultRuntimeSeccompProfileEnabled", "defaultRuntimeSeccompProfileEnabled"),
        ):
            if src in d:
                kubelet[dst] = d[src]

    def fold_KubeClusterConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        if "clusterName" in d:
            self.cluster["clusterName"] = d["clusterName"]
        if "endpoint" in d:
            self.cluster.setdefault("controlPlane", {})["endpoint"] = d["endpoint"]

    def fold_KubeAPIServerCAConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        accepted = d.get("acceptedCAs", [])
        issuing = d.get("issuingCA")
        if issuing:
            self.cluster["ca"] = {"crt": _b64(issuing["cert"]), "key": _b64(issuing["key"])}
            if accepted:
                self.cluster["acceptedCAs"] = [{"crt": _b64(c)} for c in accepted]
        elif accepted:  # a worker trusts the accepted CAs: v1alpha1 gave it cluster.ca.crt
            self.cluster["ca"] = {"crt": _b64("".join(accepted)), "key": ""}

    def fold_KubeNodeConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        kubelet = self.machine.setdefault("kubelet", {})
        for key in ("nodeIP", "skipNodeRegistration", "registerWithFQDN"):
            if key in d and d[key] != {}:
                kubelet[key] = d[key]
        for src, dst in (("labels", "nodeLabels"), ("annotations", "nodeAnnotations"),
                         ("taints", "nodeTaints")):
            if src in d:
                self.machine[dst] = d[src]

    def fold_KubeNetworkConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        cnet = self.cluster.setdefault("network", {})
        for key in ("dnsDomain", "podSubnets", "serviceSubnets"):
            if key in d:
                cnet[key] = d[key]

    def fold_LinkConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        _link_parts(d, self.iface(d["name"]))

    def fold_BondConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        from talos_init.userdata.schema import BOND_FIELDS

        entry = self.iface(d["name"])
        bond = entry.setdefault("bond", {})
        for src, dst in BOND_FIELDS.items():
            if src in d:
                bond[dst] = d[src]
        _link_parts(d, entry)

    def fold_VLANConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        parent = self.iface(d["parent"])
        vlan = {"vlanId": d["vlanID"]}
        _link_parts(d, vlan)
        parent.setdefault("vlans", []).append(vlan)
        self.vlans[d["name"]] = vlan

    def fold_DHCPv4Config(self, d: dict[str, Any]) -> None:  # noqa: N802
        target = self.vlans.get(d["name"]) or self.iface(d["name"])
        target["dhcp"] = True
        if "routeMetric" in d:
            target.setdefault("dhcpOptions", {})["routeMetric"] = d["routeMetric"]

    def fold_StaticHostConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        self.network.setdefault("extraHostEntries", []).append(
            {"ip": d["name"], "aliases": d.get("hostnames", [])}
        )

    def registries(self, part: str) -> dict[str, Any]:
        return self.machine.setdefault("registries", {}).setdefault(part, {})

    def fold_RegistryMirrorConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        endpoints = d.get("endpoints", [])
        mirror: dict[str, Any] = {"endpoints": [e["url"] for e in endpoints]}
        if any(e.get("overridePath") for e in endpoints):
            mirror["overridePath"] = True
        if "skipFallback" in d:
            mirror["skipFallback"] = d["skipFallback"]
        self.registries("mirrors")[d["name"]] = mirror

    def fold_RegistryAuthConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        auth = {k: v for k, v in d.items() if k not in ("apiVersion", "kind", "name")}
        self.registries("config").setdefault(d["name"], {})["auth"] = auth

    def fold_RegistryTLSConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        tls: dict[str, Any] = {}
        if "ca" in d:
            tls["ca"] = _b64(d["ca"])
        if "insecureSkipVerify" in d:
            tls["insecureSkipVerify"] = d["insecureSkipVerify"]
        ident = d.get("clientIdentity")
        if ident:
            tls["clientIdentity"] = {
                "crt": _b64(ident.get("cert") or ident.get("crt") or ""),
                "key": _b64(ident.get("key", "")),
            }
        self.registries("config").setdefault(d["name"], {})["tls"] = tls

    def fold_SysctlConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        self.machine.setdefault("sysctls", {}).update(d.get("params", {}))

    def fold_KernelModuleConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        module = {"name": d["name"], "parameters": d.get("parameters", [])}
        self.machine.setdefault("kernel", {}).setdefault("modules", []).append(module)

    def fold_EnvironmentConfig(self, d: dict[str, Any]) -> None:  # noqa: N802
        self.machine.setdefault("env", {}).update(d.get("variables", {}))


# Aliases first, links before the VLANs on them, VLANs before the DHCP that names them.
_ORDER = {"LinkAliasConfig": -2, "LinkConfig": 0, "BondConfig": 0, "VLANConfig": 1,
          "DHCPv4Config": 2}


def fold(effective: dict[str, Any], docs: list[Doc], walk: Walk | None = None) -> None:
    folder = _Folder(effective)
    for doc in sorted(docs, key=lambda d: _ORDER.get(d.kind, -1)):
        folder.fold(doc)
        unread = doc.kind == "LinkAliasConfig" and doc.value["name"] not in folder.aliases
        if unread and walk is not None:
            path = doc.prefix + ("selector", "match")
            walk.error(
                path,
                _mark(walk, path),
                "not applied: talos-init reads only selectors of the forms "
                'mac(link.permanent_addr) == "..", glob("..", mac(link.hardware_addr)), '
                'link.driver == ".." (joined by &&), and fixed alias names',
                WARNING,
            )


# Effective fields the node cannot run without, and where the operator may set them.
REQUIRED = (
    ("cluster.controlPlane.endpoint", "KubeClusterConfig.endpoint"),
    ("cluster.ca.crt", "KubeAPIServerCAConfig.issuingCA or .acceptedCAs"),
)


def require(effective: dict[str, Any], walk: Walk) -> None:
    """Talos needs these too (ClusterConfig.Validate, KubeClusterConfig.Validate)."""
    for dotted, alternative in REQUIRED:
        if not _present(effective, dotted, True):
            path = tuple(dotted.split("."))
            walk.error(
                path, _mark(walk, path), f"required: set {dotted} or {alternative}"
            )

