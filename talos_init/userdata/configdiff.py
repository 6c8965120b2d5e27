"""What changes between two effective machine configs, and what each change takes.

Pure (no I/O, no clock): ``plan(old, new)`` compares the running config with a new one
field by field and classifies each change as **live** (with the services to restart so
it takes effect) or **needs a reboot**. apply-config's reply, ``--dry-run`` and the
decision to refuse ``auto`` all come from here.

Who acts on what, live:
- machine.network (links, addresses, routes, DNS, hostname): networkd re-reads
  config.json on its own (inotify); nothing to restart.
- machine.sysctls, machine.files, machine.registries: the machine-setup one-shot runs again.
- machine.kubelet, nodeLabels, nodeTaints, machine.pods (static pods), machine.token and
  cluster.*: the kubelet restarts (its launcher writes its config, flags, kubeconfig and
  the static pod manifests at every start).
- machine.ca, machine.certSANs: apid restarts (a new serving certificate), last.
- machine.time: kept; no time daemon here reads it at run time, nothing to restart.
Everything else needs a reboot: machine.install (the disk and its layout are read at
boot), machine.type, and any field not listed (never guessed to be live).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REBOOT = None

# (path prefix, services to restart or REBOOT, why). First match wins: longer prefixes first.
RULES: tuple[tuple[str, tuple[str, ...] | None, str], ...] = (
    ("machine.install", REBOOT, "the install disk and its layout are used at boot"),
    ("machine.type", REBOOT, "the machine type decides the boot's services"),
    ("machine.network", (), "networkd applies it from config.json"),
    ("machine.sysctls", ("machine-setup",), "machine-setup writes them"),
    ("machine.files", ("machine-setup",), "machine-setup writes them"),
    ("machine.registries", ("machine-setup",), "machine-setup writes containerd's hosts.toml"),
    ("machine.kubelet", ("kubelet",), "the kubelet's launcher reads it at start"),
    ("machine.nodeLabels", ("kubelet",), "the kubelet registers its labels at start"),
    ("machine.nodeTaints", ("kubelet",), "the kubelet registers its taints at start"),
    ("machine.pods", ("kubelet",), "the kubelet's launcher writes the static pod manifests"),
    ("machine.token", ("kubelet",), "the kubelet's bootstrap kubeconfig"),
    ("cluster", ("kubelet",), "the kubelet's kubeconfig and cluster CA"),
    ("machine.ca", ("apid",), "apid signs its serving certificate with it at start"),
    ("machine.certSANs", ("apid",), "apid's serving certificate names"),
    ("machine.time", (), "kept in the config; nothing here reads it at run time"),
)
# Restart order: what writes files first, the kubelet after them, apid (our own API) last.
RESTART_ORDER = ("machine-setup", "kubelet", "apid")


@dataclass(frozen=True)
class Change:
    path: str  # dotted: machine.network.hostname
    op: str  # add | remove | change
    old: Any
    new: Any
    live: bool
    restart: tuple[str, ...]
    why: str

    def as_dict(self, values: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "op": self.op, "live": self.live,
                             "restart": list(self.restart), "why": self.why}
        if values:
            d["old"], d["new"] = self.old, self.new
        return d


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = ()
    restart: tuple[str, ...] = ()  # every live change's services, in RESTART_ORDER
    reboot: tuple[Change, ...] = field(default=())  # changes that need a reboot

    @property
    def live(self) -> bool:
        """Every change can take effect without a reboot."""
        return not self.reboot

    @property
    def network(self) -> bool:
        return any(c.path.startswith("machine.network") for c in self.changes)


_MISSING = object()


def diff(old: Any, new: Any, path: str = "") -> list[tuple[str, str, Any, Any]]:
    """(path, op, old, new) for every leaf that differs. Mappings recurse; lists and
    scalars compare whole (a list's items have no stable identity to diff by)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            a, b = old.get(key, _MISSING), new.get(key, _MISSING)
            if a is _MISSING:
                out.append((sub, "add", None, b))
            elif b is _MISSING:
                out.append((sub, "remove", a, None))
            else:
                out.extend(diff(a, b, sub))
        return out
    if old == new and type(old) is type(new):
        return []
    return [(path, "change", old, new)]


def classify(path: str) -> tuple[tuple[str, ...] | None, str]:
    for prefix, restart, why in RULES:
        if path == prefix or path.startswith(prefix + "."):
            return restart, why
    return REBOOT, "not known to apply live"


def plan(old: dict[str, Any], new: dict[str, Any]) -> Plan:
    changes = []
    for path, op, a, b in diff(old, new):
        restart, why = classify(path)
        changes.append(Change(path, op, a, b, restart is not REBOOT, restart or (), why))
    wanted = {s for c in changes if c.live for s in c.restart}
    order = tuple(s for s in RESTART_ORDER if s in wanted) + tuple(sorted(wanted - set(RESTART_ORDER)))
    return Plan(tuple(changes), order, tuple(c for c in changes if not c.live))
