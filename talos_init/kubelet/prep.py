"""Kubelet files and flags from the effective machine config.

Files (as Talos lays them out): /etc/kubernetes/kubelet.yaml (the
KubeletConfiguration), /etc/kubernetes/bootstrap-kubeconfig (the bootstrap
token and the API endpoint), /etc/kubernetes/pki/ca.crt (the cluster CA).
machine.pods become one manifest each in /etc/kubernetes/manifests, the
staticPodPath (talos_init.kubelet.pods). Flags: ours, merged with
machine.kubelet.extraArgs. Flags that wire the
kubelet to the node (config, kubeconfigs, cert dir, container runtime) are
protected: a user value for one is an error naming it. For every other flag
we set (node-ip, hostname-override, node-labels) the user's value wins and
the override is reported.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from talos_init.atomicfile import write_atomic
from talos_init.kubelet import pods

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CONTAINERD_ENDPOINT = "unix:///run/containerd/containerd.sock"
PROTECTED = ("config", "bootstrap-kubeconfig", "kubeconfig", "cert-dir",
             "container-runtime", "container-runtime-endpoint")  # Talos' MergeDenied flags


class KubeletPrepError(ValueError):
    pass


@dataclass(frozen=True)
class Layout:
    etc: Path = Path("/etc/kubernetes")  # a symlink into /var (see talos_init.disk)
    var_lib: Path = Path("/var/lib/kubelet")
    runtime_endpoint: str = CONTAINERD_ENDPOINT
    healthz_port: int = 10248

    @property
    def config(self) -> Path:
        return self.etc / "kubelet.yaml"

    @property
    def bootstrap_kubeconfig(self) -> Path:
        return self.etc / "bootstrap-kubeconfig"

    @property
    def kubeconfig(self) -> Path:
        return self.etc / "kubeconfig-kubelet"

    @property
    def ca(self) -> Path:
        return self.etc / "pki/ca.crt"

    @property
    def manifests(self) -> Path:
        return self.etc / "manifests"


@dataclass
class Prepared:
    argv_flags: list[str]
    files: dict[Path, tuple[bytes, int]]  # path -> (content, mode)
    notes: list[str] = field(default_factory=list)
    pods: dict[str, bytes] = field(default_factory=dict)  # static pod file name -> content


def cluster_dns(config: Mapping[str, Any]) -> list[str]:
    """machine.kubelet.clusterDNS, else the 10th address of each service subnet (as Talos)."""
    explicit = ((config.get("machine") or {}).get("kubelet") or {}).get("clusterDNS")
    if explicit:
        return [str(ipaddress.ip_address(a)) for a in explicit]
    cnet = (config.get("cluster") or {}).get("network") or {}
    subnets = cnet.get("serviceSubnets") or ["10.96.0.0/12"]
    out = []
    for s in subnets:
        net = ipaddress.ip_network(s, strict=False)
        out.append(str(net.network_address + 10))
    return out


# Talos' values (internal/app/machined/pkg/controllers/k8s/kubelet_spec.go and
# pkg/machinery/constants/constants.go); tests/unit/kubelet/test_talos_defaults.py names each.
SYSTEM_RESERVED = {"cpu": "50m", "pid": "100", "ephemeral-storage": "256Mi"}
SYSTEM_RESERVED_MEMORY = {"worker": "384Mi", "controlplane": "512Mi"}
OOM_SCORE_ADJ = -450


# Fields of the KubeletConfiguration extraConfig may not change (Talos:
# pkg/machinery/kubelet ProtectedConfigurationFields; the validator refuses them).
PROTECTED_CONFIG = ("apiVersion", "authentication", "authorization", "cgroupRoot", "kind",
                    "kubeletCgroups", "port", "protectKernelDefaults", "resolvConf",
                    "rotateCertificates", "systemCgroups", "staticPodPath")


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def kubelet_configuration(config: Mapping[str, Any], layout: Layout) -> dict[str, Any]:
    """Ours, with machine.kubelet.extraConfig (KubeletConfig.config) merged over it."""
    extra = ((config.get("machine") or {}).get("kubelet") or {}).get("extraConfig") or {}
    bad = sorted(k for k in extra if k in PROTECTED_CONFIG)
    if bad:
        raise KubeletPrepError("machine.kubelet.extraConfig: " + ", ".join(bad)
                               + " cannot be overridden")
    return _deep_merge(_our_configuration(config, layout), extra)


def _our_configuration(config: Mapping[str, Any], layout: Layout) -> dict[str, Any]:
    machine = config.get("machine") or {}
    kub = machine.get("kubelet") or {}
    cnet = (config.get("cluster") or {}).get("network") or {}
    control_plane = machine.get("type") in ("controlplane", "init")
    reserved = dict(SYSTEM_RESERVED)
    reserved["memory"] = SYSTEM_RESERVED_MEMORY["controlplane" if control_plane else "worker"]
    doc: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "0.0.0.0",
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": layout.healthz_port,
        "staticPodPath": str(layout.manifests),
        "containerRuntimeEndpoint": layout.runtime_endpoint,  # the flag is deprecated
        "cgroupDriver": "cgroupfs",  # containerd's runc runs with SystemdCgroup = false
        "cgroupRoot": "/",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "2m0s"},
            "x509": {"clientCAFile": str(layout.ca)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": cnet.get("dnsDomain") or "cluster.local",
        "clusterDNS": cluster_dns(config),
        "rotateCertificates": True,
        "protectKernelDefaults": True,  # talos_init.hardening sets what it checks
        "serializeImagePulls": False,
        "tlsMinVersion": "VersionTLS13",
        "failSwapOn": False,
        # In the config: the real kubelet sets its own process to this value (its default is
        # -999), whatever the service's confinement gave it.
        "oomScoreAdj": OOM_SCORE_ADJ,
        "systemReserved": reserved,
        "shutdownGracePeriod": "30s",
        "shutdownGracePeriodCriticalPods": "10s",
        "resolvConf": "/etc/resolv.conf",
        "logging": {"format": "json"},
    }
    if kub.get("defaultRuntimeSeccompProfileEnabled"):
        doc["seccompDefault"] = True
    return doc


def node_name(hostname: str, register_with_fqdn: bool = False) -> str:
    """The Node name Talos derives from a hostname: the short name unless registerWithFQDN,
    lowercased, '_' as '-', other characters dropped (Talos' nodename.FromHostname)."""
    name = hostname if register_with_fqdn else hostname.split(".", 1)[0]
    out = []
    for ch in name.lower():
        if ch in "-_":
            out.append("-")
        elif ch == "." or ch.isascii() and ch.isalnum():
            out.append(ch)
    cleaned = "".join(out).strip("-.")
    if not cleaned:
        raise KubeletPrepError(f"machine.network.hostname {hostname!r}: no valid Kubernetes "
                               "Node name can be made from it")
    return cleaned


def accepted_cas(config: Mapping[str, Any]) -> bytes:
    """cluster.ca.crt followed by every cluster.acceptedCAs certificate (PEM), as Talos joins
    them for the kubelet's CA file and bootstrap kubeconfig (kubelet_service.go)."""
    cluster = config.get("cluster") or {}
    pems = [(cluster.get("ca") or {}).get("crt")]
    where = ["cluster.ca.crt"]
    for i, extra in enumerate(cluster.get("acceptedCAs") or []):
        pems.append((extra or {}).get("crt"))
        where.append(f"cluster.acceptedCAs[{i}].crt")
    if not pems[0]:
        raise KubeletPrepError("cluster.ca.crt is missing from the machine config")
    out = b""
    for b64, name in zip(pems, where, strict=True):
        try:
            pem = base64.b64decode(b64 or "", validate=True)
        except ValueError:
            raise KubeletPrepError(f"{name} is not base64-encoded PEM") from None
        if not pem:
            raise KubeletPrepError(f"{name} is empty")
        out += pem if pem.endswith(b"\n") else pem + b"\n"
    return out


def bootstrap_kubeconfig(config: Mapping[str, Any], ca: bytes | None = None) -> dict[str, Any]:
    """``ca``: the PEM bundle to trust (default: cluster.ca.crt with the accepted CAs)."""
    cluster = config.get("cluster") or {}
    try:
        endpoint = cluster["controlPlane"]["endpoint"]
        token = cluster["token"]
    except (KeyError, TypeError) as exc:
        raise KubeletPrepError(
            f"cluster.{exc.args[0]} is missing from the machine config") from None
    name = cluster.get("clusterName") or "talos-init"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": endpoint,
            "certificate-authority-data": base64.b64encode(
                accepted_cas(config) if ca is None else ca).decode()}}],
        "users": [{"name": "kubelet-bootstrap", "user": {"token": token}}],
        "contexts": [{"name": f"kubelet-bootstrap@{name}",
                      "context": {"cluster": name, "user": "kubelet-bootstrap"}}],
        "current-context": f"kubelet-bootstrap@{name}",
        "preferences": {},
    }


def pick_node_ips(valid_subnets: Iterable[str], addresses: Iterable[IPAddress]) -> list[IPAddress]:
    """Talos' nodeIP.validSubnets: the first address of each family inside an included subnet
    and outside every '!'-excluded one (a bare IP is a /32 or /128)."""
    include: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    exclude: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for s in valid_subnets:
        target = exclude if s.startswith("!") else include
        target.append(ipaddress.ip_network(s.lstrip("!"), strict=False))
    chosen: dict[int, IPAddress] = {}
    for addr in addresses:
        if addr.version in chosen:
            continue
        if any(addr in n for n in include if n.version == addr.version) and \
                not any(addr in n for n in exclude if n.version == addr.version):
            chosen[addr.version] = addr
    return [chosen[v] for v in (4, 6) if v in chosen]


def _flag_values(key: str, value: Any) -> list[str]:
    if isinstance(value, list):
        return [f"--{key}={v}" for v in value]
    if isinstance(value, bool):
        value = "true" if value else "false"
    return [f"--{key}={value}"]


def flag_name(key: str) -> str:
    """The flag as the kubelet reads it: its flag library takes '_' for '-' (cert_dir is cert-dir)."""
    return key.lstrip("-").replace("_", "-")


def merge_flags(ours: dict[str, str], extra: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Our flags merged with extraArgs; (argv flags, notes). Protected overrides raise."""
    notes = []
    bad = sorted({flag_name(k) for k in extra if flag_name(k) in PROTECTED})
    if bad:
        raise KubeletPrepError(
            "machine.kubelet.extraArgs: " + ", ".join(f"--{k}" for k in bad)
            + " cannot be overridden (talos-init wires the kubelet to this node with it)")
    merged: dict[str, Any] = dict(ours)
    for given, value in extra.items():
        key = flag_name(given)
        if key in ours and str(ours[key]) != str(value):
            notes.append(f"machine.kubelet.extraArgs.{given.lstrip('-')}={value!r} overrides "
                         f"talos-init's --{key}={ours[key]}")
        merged[key] = value
    flags = []
    for key in merged:  # ours first, in a stable order, then the user's
        flags += _flag_values(key, merged[key])
    return flags, notes


def prepare(config: Mapping[str, Any], layout: Layout,
            addresses: Iterable[IPAddress] | None = None) -> Prepared:
    """Files and flags; ``addresses`` are the node's (needed only with nodeIP.validSubnets)."""
    machine = config.get("machine") or {}
    kub = machine.get("kubelet") or {}
    ca = accepted_cas(config)
    files = {  # modes as Talos writes them
        layout.config: (_yaml(kubelet_configuration(config, layout)), 0o600),
        layout.bootstrap_kubeconfig: (_yaml(bootstrap_kubeconfig(config, ca)), 0o600),
        layout.ca: (ca, 0o400),
    }
    ours = {
        "config": str(layout.config),
        "bootstrap-kubeconfig": str(layout.bootstrap_kubeconfig),
        "kubeconfig": str(layout.kubeconfig),
        "cert-dir": str(layout.var_lib / "pki"),
    }
    hostname = (machine.get("network") or {}).get("hostname")
    if hostname:
        ours["hostname-override"] = node_name(hostname, bool(kub.get("registerWithFQDN")))
    subnets = (kub.get("nodeIP") or {}).get("validSubnets") or []
    if subnets:
        ips = pick_node_ips(subnets, addresses or [])
        if not ips:
            raise KubeletPrepError(f"machine.kubelet.nodeIP.validSubnets {subnets}: no address of "
                                   "this node matches yet (will retry on restart)")
        ours["node-ip"] = ",".join(str(ip) for ip in ips)
    labels = machine.get("nodeLabels") or {}
    if labels:
        ours["node-labels"] = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    static_pods, pod_notes = pods.runnable(machine.get("pods") or [])
    flags, notes = merge_flags(ours, kub.get("extraArgs") or {})
    notes += pod_notes
    for i, m in enumerate(kub.get("extraMounts") or []):
        # Talos bind-mounts these into its kubelet container; ours runs in the node's own
        # mount namespace, where every host path is already visible as itself.
        if m.get("source") and m.get("source") != m.get("destination"):
            notes.append(f"machine.kubelet.extraMounts[{i}]: {m['source']} -> "
                         f"{m.get('destination')} is not applied (the kubelet sees host paths "
                         "directly; use the source path)")
    return Prepared(flags, files, notes, static_pods)


def _yaml(doc: dict[str, Any]) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False).encode()


def write_files(prepared: Prepared, layout: Layout) -> list[str]:
    """Write everything; returns notes (static pod files removed)."""
    for d in (layout.etc, layout.manifests, layout.ca.parent, layout.var_lib):
        d.mkdir(parents=True, exist_ok=True)
    for path, (content, mode) in prepared.files.items():
        write_atomic(path, content, mode)
    removed = pods.write(layout.manifests, prepared.pods)
    return [f"removed static pod {layout.manifests / name}: no longer in machine.pods"
            for name in removed]
