"""containerd 1.6 configuration (version 2 schema) and registry hosts.

``config.toml`` does not depend on the machine config, so it is rendered once
(``configs/containerd/config.toml``, shipped in the image; a test keeps the
two equal) and containerd starts before the config arrives. Registry mirrors
come from the config later, as hosts.toml files under CRI's ``config_path``,
which containerd 1.6 reads at every pull: no restart needed.

TOML is produced by hand (the standard library reads TOML but does not write
it); every string goes through ``_s`` so a hostile value cannot break out of
its quotes, and tests parse the result back with ``tomllib``.

Regenerate the shipped file with ``python -m talos_init.containerd.config >
configs/containerd/config.toml``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from talos_init.atomicfile import write_atomic
from talos_init.userdata.targets import mirror_name_problem

CRI = 'plugins."io.containerd.grpc.v1.cri"'
SANDBOX_IMAGE = "registry.k8s.io/pause:3.8"
CUSTOMIZATION = "/etc/cri/conf.d/20-customization.part"  # Talos' machine.files hook for CRI
# containerd globs imports: a pattern matching nothing is fine, a missing plain path is fatal.
IMPORTS = "/etc/cri/conf.d/*.part"


class ContainerdConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Layout:
    """Where containerd keeps things; tests point these into a temp dir."""

    config: Path = Path("/etc/containerd/config.toml")
    hosts_dir: Path = Path("/etc/containerd/certs.d")
    root: Path = Path("/var/lib/containerd")
    state: Path = Path("/run/containerd")
    address: Path = Path("/run/containerd/containerd.sock")
    cni_bin_dir: Path = Path("/opt/cni/bin")  # where cluster CNIs install theirs (disk/cnibin.py)
    cni_conf_dir: Path = Path("/etc/cni/net.d")
    imports: str = IMPORTS
    sandbox_image: str = SANDBOX_IMAGE


def _s(value: Any) -> str:
    """A TOML basic string (JSON's escapes are a subset TOML accepts)."""
    return json.dumps(str(value), ensure_ascii=True)


def render(layout: Layout) -> str:
    """config.toml for containerd 1.6: CRI on, runc with cgroupfs (the kubelet's cgroupDriver)."""
    lines = [
        "# talos-init's containerd config, the same on every node (talos_init/containerd/config.py).",
        "# Registry mirrors: hosts.toml files under config_path, written by machine-setup.",
        "version = 2",
        f"root = {_s(layout.root)}",
        f"state = {_s(layout.state)}",
        "oom_score = -999",
        f"imports = [{_s(layout.imports)}]",
        # Snapshotters this node cannot use would only log errors at every start.
        "disabled_plugins = [" + ", ".join(_s(f"io.containerd.snapshotter.v1.{s}")
                                         for s in ("aufs", "btrfs", "zfs", "devmapper")) + "]",
        "",
        # containerd's default would be /opt/containerd, outside /var.
        '[plugins."io.containerd.internal.v1.opt"]',
        f"  path = {_s(layout.root / 'opt')}",
        "",
        "[grpc]",
        f"  address = {_s(layout.address)}",
        "",
        f"[{CRI}]",
        f"  sandbox_image = {_s(layout.sandbox_image)}",
        "",
        f"[{CRI}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        "  discard_unpacked_layers = true",
        "",
        f"[{CRI}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        "",
        f"[{CRI}.containerd.runtimes.runc.options]",
        "  SystemdCgroup = false",
        # The node's / is the initramfs (rootfs), where pivot_root(2) fails with EINVAL:
        # runc moves the container's root over / and chroots instead (runc's --no-pivot).
        "  NoPivotRoot = true",
        "",
        f"[{CRI}.cni]",
        f"  bin_dir = {_s(layout.cni_bin_dir)}",
        f"  conf_dir = {_s(layout.cni_conf_dir)}",
        "",
        f"[{CRI}.registry]",
        f"  config_path = {_s(layout.hosts_dir)}",
        "",
    ]
    return "\n".join(lines)


def _mirror_dir(name: str) -> str:
    """containerd's hosts directory name for a registry: '*' is the catch-all '_default'."""
    if name == "*":
        return "_default"
    why = mirror_name_problem(name)  # the validator refused it already; a stored config is old
    if why:
        raise ContainerdConfigError(f"machine.registries.mirrors: {why}")
    return name


def _upstream(name: str) -> str | None:
    if name == "*":
        return None
    return "https://registry-1.docker.io" if name == "docker.io" else f"https://{name}"


def render_hosts(name: str, mirror: Mapping[str, Any], registry_config: Mapping[str, Any],
                 ca_dir: Path) -> tuple[str, dict[Path, bytes]]:
    """hosts.toml for one registry, and CA files it refers to (path -> PEM)."""
    endpoints = mirror.get("endpoints") or []
    if not isinstance(endpoints, list) or not endpoints:
        raise ContainerdConfigError(
            f"machine.registries.mirrors.{name}.endpoints: needs at least one URL")
    files: dict[Path, bytes] = {}
    entries: list[tuple[str, list[str]]] = []  # (URL, its settings)
    for i, url in enumerate(endpoints):
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ContainerdConfigError(f"machine.registries.mirrors.{name}.endpoints[{i}]: "
                                        f"{url!r} is not an http(s) URL")
        settings = ['capabilities = ["pull", "resolve"]']
        if mirror.get("overridePath"):
            settings.append("override_path = true")
        tls = (registry_config.get(parts.netloc) or {}).get("tls") or {}
        if tls.get("insecureSkipVerify"):
            settings.append("skip_verify = true")
        if tls.get("ca"):
            pem = base64.b64decode(tls["ca"])
            path = ca_dir / f"{parts.netloc.replace(':', '_')}-ca.crt"
            files[path] = pem
            settings.append(f"ca = {_s(path)}")
        entries.append((str(url), settings))
    lines = ["# Generated by talos-init from machine.registries; edits are overwritten."]
    upstream = _upstream(name)
    if mirror.get("skipFallback"):
        # Without a server containerd 1.6 falls back to the upstream registry by itself: the
        # last mirror becomes the server instead, as Talos does (cri/containerd/hosts.go).
        last_url, last_settings = entries[-1]
        lines += [f"server = {_s(last_url)}", *last_settings]
        # containerd 1.6 rejects a hosts.toml without a [host] table (getSortedHosts) and then
        # falls back to upstream: a single mirror stays a host as well (tried twice, no leak).
        entries = entries[:-1] or entries
    elif upstream:
        lines.append(f"server = {_s(upstream)}")  # tried after every mirror
    for url, settings in entries:
        lines += ["", f"[host.{_s(url)}]", *(f"  {line}" for line in settings)]
    return "\n".join(lines) + "\n", files


def write_hosts(config: Mapping[str, Any] | None, hosts_dir: Path) -> list[str]:
    """Write one hosts.toml per mirror of machine.registries (and the CA files they name);
    returns notes worth logging. containerd reads them at its next pull."""
    notes: list[str] = []
    registries = ((config or {}).get("machine") or {}).get("registries") or {}
    mirrors = registries.get("mirrors") or {}
    reg_config = registries.get("config") or {}
    for host, cfg in reg_config.items():
        if (cfg or {}).get("auth"):
            notes.append(f"machine.registries.config.{host}.auth is not supported; ignored")
    written = set()
    for name, mirror in mirrors.items():
        text, files = render_hosts(name, mirror or {}, reg_config, hosts_dir / "_ca")
        for path, pem in files.items():
            write_atomic(path, pem)
        d = _mirror_dir(name)
        write_atomic(hosts_dir / d / "hosts.toml", text.encode())
        written.add(d)
    if hosts_dir.is_dir():  # mirrors removed from the config must not linger
        for old in hosts_dir.iterdir():
            if old.is_dir() and old.name not in written and (old / "hosts.toml").exists():
                (old / "hosts.toml").unlink()
                notes.append(f"removed stale registry hosts for {old.name}")
    return notes


if __name__ == "__main__":
    import sys

    sys.stdout.write(render(Layout()))
