"""Cross-field rules of the v1alpha1 config: checks no single field can make alone.

Each rule reads the checked value (parts that failed their own check are ``INVALID``
and skipped) and reports through the ``Walk`` at the path it names.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from talos_init.kubelet.pods import all_problems
from talos_init.kubelet.prep import PROTECTED_CONFIG
from talos_init.userdata.spec import INVALID, WARNING, Path, Walk

Rule = Callable[[dict[str, Any], Walk], None]


def _get(doc: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(doc, dict) and isinstance(key, str):
            doc = doc.get(key)
        elif isinstance(doc, list) and isinstance(key, int) and key < len(doc):
            doc = doc[key]
        else:
            return None
        if doc is INVALID:
            return None
    return doc


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _report(walk: Walk, path: Path, message: str, severity: str = "error") -> None:
    where = path
    while where and where not in walk.marks:
        where = where[:-1]
    walk.error(path, walk.marks.get(where, (1, 1)), message, severity)


def _family(text: str) -> int | None:
    try:
        return ipaddress.ip_interface(text.lstrip("!")).version
    except ValueError:
        return None


def check_routes(routes: Any, base: Path, walk: Walk) -> None:
    for i, route in enumerate(_list(routes)):
        if not isinstance(route, dict):
            continue
        path = base + (i,)
        network, gateway = route.get("network"), route.get("gateway")
        network = network if isinstance(network, str) else ""
        gateway = gateway if isinstance(gateway, str) else ""
        fams = {}
        if network:
            try:
                fams["network"] = ipaddress.ip_network(network, strict=False).version
            except ValueError:
                _report(walk, path + ("network",), f"{network!r} is not a CIDR (e.g. 10.0.0.0/8)")
        if gateway:
            try:
                fams["gateway"] = ipaddress.ip_address(gateway).version
            except ValueError:
                _report(walk, path + ("gateway",), f"{gateway!r} is not an IP address")
        if not network and not gateway:
            _report(walk, path, "a route needs a network, a gateway, or both")
        source = route.get("source")
        if isinstance(source, str):
            fams["source"] = ipaddress.ip_address(source).version
        if len(set(fams.values())) > 1:
            desc = ", ".join(f"{k} is IPv{v}" for k, v in fams.items())
            # A warning: Talos' CheckDeviceRoutes does not compare families.
            _report(walk, path, f"address families differ: {desc}", WARNING)


def rule_interfaces(doc: dict[str, Any], walk: Walk) -> None:
    ifaces = _list(_get(doc, "machine", "network", "interfaces"))
    base: Path = ("machine", "network", "interfaces")
    names: dict[str, int] = {}
    for i, dev in enumerate(ifaces):
        if not isinstance(dev, dict):
            continue
        path = base + (i,)
        has_name, has_sel = "interface" in dev, "deviceSelector" in dev
        if has_name == has_sel:
            _report(walk, path, "set exactly one of 'interface' and 'deviceSelector'")
        sel = dev.get("deviceSelector")
        if isinstance(sel, dict) and not sel:
            _report(walk, path + ("deviceSelector",), "an empty deviceSelector matches nothing")
        name = dev.get("interface")
        if isinstance(name, str):
            if name in names:
                _report(  # a warning: Talos merges entries of one link, refuses none
                    walk,
                    path + ("interface",),
                    f"interface {name!r} is configured twice (also interfaces[{names[name]}])",
                    WARNING,
                )
            names[name] = i
        check_routes(dev.get("routes"), path + ("routes",), walk)
        if "dhcpOptions" in dev and not dev.get("dhcp"):
            _report(
                walk,
                path + ("dhcpOptions",),
                "dhcpOptions has no effect unless dhcp is true",
                WARNING,
            )
        ids: dict[int, int] = {}
        for j, vlan in enumerate(_list(dev.get("vlans"))):
            if not isinstance(vlan, dict):
                continue
            vid = vlan.get("vlanId")
            if isinstance(vid, int):
                if vid in ids:
                    _report(  # a warning: Talos does not refuse it
                        walk,
                        path + ("vlans", j, "vlanId"),
                        f"VLAN {vid} is defined twice on this interface",
                        WARNING,
                    )
                ids[vid] = j
            check_routes(vlan.get("routes"), path + ("vlans", j, "routes"), walk)


def rule_keys_for_role(doc: dict[str, Any], walk: Walk) -> None:
    """Talos v1alpha1_validation.go: "issuing CA key is required for controlplane nodes
    (.machine.ca.key)". It asks no cluster.ca key of a control plane."""
    if _get(doc, "machine", "type") != "controlplane":
        return
    ca = _get(doc, "machine", "ca")
    if isinstance(ca, dict) and "crt" in ca and not ca.get("key"):
        _report(walk, ("machine", "ca", "key"), "a controlplane node needs the CA private key")


def rule_cluster_network(doc: dict[str, Any], walk: Walk) -> None:
    """Subnet checks are warnings: Talos checks v1alpha1 subnets nowhere (only the newer
    KubeNetworkConfig). CNI checks follow ValidateCNI (v1alpha1_validation.go): run for
    control planes only, and 'custom' without urls is a warning there too."""
    cp = _get(doc, "machine", "type") == "controlplane"
    net = _get(doc, "cluster", "network")
    if not isinstance(net, dict):
        return
    base: Path = ("cluster", "network")
    parsed: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
    for key in ("podSubnets", "serviceSubnets"):
        nets = [ipaddress.ip_network(n) for n in _list(net.get(key)) if isinstance(n, str)]
        parsed[key] = nets
        fams = [n.version for n in nets]
        if len(fams) != len(set(fams)):
            _report(
                walk, base + (key,), "at most one subnet per address family (IPv4, IPv6)", WARNING
            )
        if len(nets) > 2:
            _report(walk, base + (key,), "at most two subnets (one IPv4, one IPv6)", WARNING)
    for pod in parsed["podSubnets"]:
        for svc in parsed["serviceSubnets"]:
            if pod.version == svc.version and pod.overlaps(svc):
                _report(
                    walk,
                    base + ("serviceSubnets",),
                    f"service subnet {svc} overlaps pod subnet {pod}",
                    WARNING,
                )
    if (
        {n.version for n in parsed["podSubnets"]} != {n.version for n in parsed["serviceSubnets"]}
        and parsed["podSubnets"]
        and parsed["serviceSubnets"]
    ):
        _report(
            walk,
            base + ("serviceSubnets",),
            "pod and service subnets must cover the same address families",
            WARNING,
        )
    cni = net.get("cni")
    if isinstance(cni, dict):
        name, urls = cni.get("name"), _list(cni.get("urls"))
        if name == "custom" and not urls:
            _report(
                walk,
                base + ("cni", "urls"),
                "cni name 'custom' needs at least one manifest URL",
                WARNING,
            )
        if name in ("flannel", "none") and urls:
            _report(
                walk,
                base + ("cni", "urls"),
                f"cni name {name!r} takes no urls (use name: custom)",
                "error" if cp else WARNING,
            )


def rule_node_ip(doc: dict[str, Any], walk: Walk) -> None:
    subnets = _list(_get(doc, "machine", "kubelet", "nodeIP", "validSubnets"))
    seen_negative = False
    for i, s in enumerate(subnets):
        if not isinstance(s, str):
            continue
        if s.startswith("!"):
            seen_negative = True
        elif seen_negative:
            _report(
                walk,
                ("machine", "kubelet", "nodeIP", "validSubnets", i),
                "put exclusions ('!...') after the subnets they filter",
                WARNING,
            )


def rule_files(doc: dict[str, Any], walk: Walk) -> None:
    created: dict[str, int] = {}
    for i, f in enumerate(_list(_get(doc, "machine", "files"))):
        if isinstance(f, dict) and f.get("op") == "create" and isinstance(f.get("path"), str):
            if f["path"] in created:
                _report(
                    walk,
                    ("machine", "files", i, "path"),
                    f"{f['path']} is created twice (also files[{created[f['path']]}])",
                    WARNING,  # Talos does not refuse it; the second write wins
                )
            created[f["path"]] = i


def rule_pods(doc: dict[str, Any], walk: Walk) -> None:
    """Static pods the kubelet could not run (talos_init.kubelet.pods has the checks):
    warnings, as Talos does not check machine.pods; the kubelet preparation skips them."""
    pods = _get(doc, "machine", "pods")
    if pods is None:
        return
    for path, message in all_problems(pods):
        _report(walk, ("machine", "pods", *path), message, WARNING)


def check_kubelet_config(extra: Any, base: Path, walk: Walk) -> None:
    """Talos' KubeletConfig validation (v1alpha1_validation.go, k8s/kubelet.go) refuses
    ProtectedConfigurationFields in extraConfig / KubeletConfig.config."""
    for key in _dict(extra):
        if key in PROTECTED_CONFIG:
            _report(walk, base + (key,), f"kubelet configuration field {key!r} can't be overridden")


def rule_kubelet_extra_config(doc: dict[str, Any], walk: Walk) -> None:
    extra = _get(doc, "machine", "kubelet", "extraConfig")
    check_kubelet_config(extra, ("machine", "kubelet", "extraConfig"), walk)


RULES: list[Rule] = [
    rule_kubelet_extra_config,
    rule_interfaces,
    rule_keys_for_role,
    rule_cluster_network,
    rule_node_ip,
    rule_files,
    rule_pods,
]


def run(doc: dict[str, Any], walk: Walk) -> None:
    for rule in RULES:
        rule(doc, walk)
