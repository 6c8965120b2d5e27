"""Machine config text in, a typed config or every problem found out. Never raises on input.

Steps: decode, compose the YAML stream (marks give line:column), sort the documents
(one v1alpha1 document plus ``apiVersion``/``kind`` documents), check each against the
table in ``schema.py``, run the cross-field rules, fold the multi-document kinds into
the v1alpha1 shape, normalize, and build the dataclasses of ``model.py``.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from typing import Any

import yaml

from talos_init.userdata import fold, rules
from talos_init.userdata.model import MachineConfig
from talos_init.userdata.schema import KIND_DOCS, NAMED_KINDS, OTHER_KINDS, V1ALPHA1
from talos_init.userdata.spec import (
    ERROR,
    INVALID,
    NOTICE,
    WARNING,
    Path,
    Problem,
    Walk,
    describe,
    is_null,
)

MAX_BYTES = 1 << 20


@dataclass
class Result:
    config: MachineConfig | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def unsupported(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == NOTICE]

    @property
    def ok(self) -> bool:
        return self.config is not None


def _contains_invalid(value: Any) -> bool:
    if value is INVALID:
        return True
    if isinstance(value, dict):
        return any(_contains_invalid(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_invalid(v) for v in value)
    return False


def _doc_kind(node: yaml.MappingNode) -> tuple[str | None, yaml.Node | None]:
    for knode, vnode in node.value:
        if (
            isinstance(knode, yaml.ScalarNode)
            and knode.value == "kind"
            and isinstance(vnode, yaml.ScalarNode)
        ):
            return str(vnode.value), vnode
    return None, None


def _compose(text: str, walk: Walk) -> list[yaml.Node]:
    try:
        return [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = " ".join(x for x in (e.context, e.problem) if x) or str(e)
        walk.error((), (line, col), f"not valid YAML: {reason}")
    except yaml.YAMLError as e:
        walk.error((), (1, 1), f"not valid YAML: {e}")
    except RecursionError:
        walk.error((), (1, 1), "not valid YAML here: nested too deeply")
    return []


def _default_route(gateway: str) -> str:
    return "0.0.0.0/0" if ipaddress.ip_address(gateway).version == 4 else "::/0"


def _normalize_links(items: list[dict[str, Any]]) -> None:
    for link in items:
        addresses = link.setdefault("addresses", [])
        cidr = link.pop("cidr", None)  # deprecated single address: one list for consumers
        if cidr and cidr not in addresses:
            addresses.insert(0, cidr)
        for route in link.setdefault("routes", []):
            if not route.get("network"):
                route["network"] = _default_route(route["gateway"])
            else:
                route["network"] = str(ipaddress.ip_network(route["network"], strict=False))
            if not route.get("gateway"):
                route.pop("gateway", None)
        link["dhcp"] = bool(link.get("dhcp", False))
        _normalize_links(link.get("vlans", []))


def _normalize(eff: dict[str, Any]) -> dict[str, Any]:
    """Fill the containers consumers rely on, so they never test for a missing section."""
    m, c = eff["machine"], eff["cluster"]
    net = m.setdefault("network", {})
    for key in ("interfaces", "nameservers", "searchDomains"):
        net.setdefault(key, [])
    _normalize_links(net["interfaces"])
    for iface in net["interfaces"]:
        iface["vlans"] = iface.get("vlans", [])
    kub = m.setdefault("kubelet", {})
    kub.setdefault("extraArgs", {})
    kub.setdefault("extraMounts", [])
    for mount in kub["extraMounts"]:
        mount.setdefault("type", "bind")
    inst = m.setdefault("install", {})
    inst.setdefault("wipe", False)  # never destroy data that was not asked for
    for key, empty in (("sysctls", {}), ("files", []), ("env", {})):
        m.setdefault(key, empty)
    m.setdefault("time", {}).setdefault("servers", [])
    cnet = c.setdefault("network", {})
    cnet.setdefault("dnsDomain", "cluster.local")
    cnet.setdefault("podSubnets", ["10.244.0.0/16"])
    cnet.setdefault("serviceSubnets", ["10.96.0.0/12"])
    cnet.setdefault("cni", {}).setdefault("name", "flannel")
    return eff


def parse(data: bytes | str, source: str = "config") -> Result:
    """Validate a machine config; returns a config, or no config and every error found."""
    walk = Walk()
    try:
        return _parse(data, walk)
    except RecursionError:
        walk.error((), (1, 1), "the document is nested too deeply to check")
        return Result(None, sorted(walk.problems))


def _parse(data: bytes | str, walk: Walk) -> Result:
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            walk.error((), (1, 1), f"the config is {len(data)} bytes; the limit is {MAX_BYTES}")
            return Result(None, walk.problems)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            walk.error(
                (), (1, 1), f"not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r})"
            )
            return Result(None, walk.problems)
    else:
        text = data
    docs = _compose(text, walk)
    main: Any = None
    kinds: list[fold.Doc] = []
    seen: dict[str, tuple[int, int]] = {}
    for index, node in enumerate(docs):
        if is_null(node):
            continue
        where = f"document {index + 1}"
        if not isinstance(node, yaml.MappingNode):
            walk.error((), node, f"{where}: expected a mapping, got {describe(node)}")
            continue
        kind, kind_node = _doc_kind(node)
        if kind is None:
            if any(isinstance(k, yaml.ScalarNode) and k.value == "kind" for k, _ in node.value):
                walk.error(("kind",), node, f"{where}: kind must be text")
            elif main is not None:
                walk.error((), node, f"{where}: a second v1alpha1 document (only one is allowed)")
            else:
                main = V1ALPHA1.check(node, (), walk, True)
            continue
        assert kind_node is not None
        spec = KIND_DOCS.get(kind) or OTHER_KINDS.get(kind)
        if spec is None:
            walk.error(
                (kind,),
                kind_node,
                f"{where}: unknown document kind {kind!r} (not a kind of Talos 1.5 to 1.15)",
            )
            continue
        name = _doc_name(node) if kind in NAMED_KINDS else None
        prefix: Path = (kind,) if name is None else (f"{kind}({name})",)
        # Talos config/container: one document per kind, or per kind and name.
        ident = kind if name is None else f"{kind} named {name!r}"
        if ident in seen:
            line, col = seen[ident]
            walk.error(
                prefix,
                kind_node,
                f"{where}: a second {ident} document (the first is at line {line}, "
                f"column {col}); Talos refuses duplicate documents",
            )
            continue
        seen[ident] = walk.mark(kind_node)
        acted = kind in KIND_DOCS
        if not acted:
            walk.notice_unsupported(prefix, kind_node)
        value = spec.check(node, prefix, walk, acted)
        if isinstance(value, dict) and kind == "KubeletConfig":
            rules.check_kubelet_config(value.get("config"), prefix + ("config",), walk)
        if isinstance(value, dict):  # else INVALID, already reported
            kinds.append(fold.Doc(kind, name, prefix, value, walk.mark(kind_node)))
    if walk.too_big:
        walk.error((), (1, 1), "the document expands to too many nodes (YAML alias expansion?)")
    if main is None and not any(p.severity == ERROR for p in walk.problems):
        walk.error(
            ("version",),
            (1, 1),
            "no v1alpha1 document (version: v1alpha1 with machine: and cluster:)",
        )
    if isinstance(main, dict):
        rules.run(main, walk)
        fold.conflicts(main, kinds, walk)
    if (
        any(p.severity == ERROR for p in walk.problems)
        or _contains_invalid(main)
        or any(_contains_invalid(d.value) for d in kinds)
    ):
        if not any(
            p.severity == ERROR for p in walk.problems
        ):  # cannot happen: INVALID is always reported
            walk.error((), (1, 1), "invalid config")
        return Result(None, sorted(walk.problems))
    effective = copy.deepcopy(main)
    fold.fold(effective, [d for d in kinds if d.kind in KIND_DOCS], walk)
    fold.require(effective, walk)
    if any(p.severity == ERROR for p in walk.problems):
        return Result(None, sorted(walk.problems))
    effective = _normalize(effective)
    return Result(MachineConfig.from_effective(effective), sorted(walk.problems))


def _doc_name(node: yaml.MappingNode) -> str | None:
    for knode, vnode in node.value:
        if isinstance(knode, yaml.ScalarNode) and knode.value == "name":
            return str(vnode.value) if isinstance(vnode, yaml.ScalarNode) else None
    return None


def format_problems(result: Result, source: str = "config") -> list[str]:
    return [p.format(source) for p in result.problems]
