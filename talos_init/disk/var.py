"""Set up /var: the install disk's data partition, or tmpfs when there is no disk.

At boot (``setup_at_boot``): load the storage drivers, then mount an installed
/var (the one partition named EPHEMERAL holding our ext4, found through sysfs)
without waiting for the machine config; only when there is none does it wait
for the config and run ``setup``. ``setup``: choose the disk, probe it, decide
(``plan``), act (partition, format, check), mount with nodev,nosuid,noatime.
Both then create the directories the node services need and link
/etc/kubernetes to its state under /var. Every refusal raises ``DiskError``
with a message naming the disk and what to do.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from talos_init import kmodules, mounts, sdnotify, syscalls
from talos_init.disk import FSTYPE, LABEL, DiskError, cnibin, drivers, ext4sb, installed
from talos_init.log import get_logger

log = get_logger("disk")

VAR_FLAGS = syscalls.MS_NODEV | syscalls.MS_NOSUID | syscalls.MS_NOATIME
# Directories the node services keep their state in (relative to /var), with modes.
STATE_DIRS = {"lib/containerd": 0o711, "lib/kubelet": 0o700, "lib/kubernetes": 0o755,
              "log": 0o755, "lib/cni": 0o755}


class Layout:
    """Where things live; tests point these into a temp dir. (Plain classes here and in
    Result: dataclasses imports inspect, a tenth of a second of this process under TCG.)"""

    def __init__(self, var: Path = Path("/var"), etc: Path = Path("/etc"),
                 report: Path = Path("/run/talos/var.json"),
                 mountinfo: str = "/proc/self/mountinfo", device_wait: float = 10.0,
                 sys_block: Path = Path("/sys/class/block"), sys_bus: Path = Path("/sys/bus"),
                 disks: tuple[str, ...] | None = None, load_drivers: bool = True,
                 config_poll: float = 0.2, cni_bin: Path = cnibin.TARGET,
                 cni_plugins: Path = cnibin.PLUGINS):
        self.var, self.etc, self.report, self.mountinfo = var, etc, report, mountinfo
        self.cni_bin, self.cni_plugins = cni_bin, cni_plugins
        self.device_wait, self.sys_block, self.sys_bus = device_wait, sys_block, sys_bus
        self.disks = disks  # name patterns searched for EPHEMERAL (None: all disks)
        self.load_drivers = load_drivers
        self.config_poll = config_poll  # seconds between looks for config.json (and a late disk)


class Result:
    FIELDS = ("mode", "device", "partition", "action", "fsck", "found_by", "notes")

    def __init__(self, mode: str, device: str | None = None, partition: str | None = None,
                 action: str | None = None, fsck: str | None = None,
                 found_by: str | None = None, notes: list[str] | None = None):
        self.mode = mode  # disk | ephemeral | already-mounted
        self.device, self.partition, self.action, self.fsck = device, partition, action, fsck
        self.found_by = found_by  # "label": before the machine config; "config": install.disk
        self.notes = notes if notes is not None else []

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def __repr__(self) -> str:
        return f"Result({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"


def make_state_dirs(layout: Layout) -> None:
    for rel, mode in STATE_DIRS.items():
        path = layout.var / rel
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
    link_etc_kubernetes(layout)


def link_etc_kubernetes(layout: Layout) -> None:
    """/etc/kubernetes -> /var/lib/kubernetes: a symlink, not a bind mount, so shutdown has
    nothing extra to unmount before /var."""
    link, target = layout.etc / "kubernetes", layout.var / "lib/kubernetes"
    layout.etc.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        if os.readlink(link) == str(target):
            return
        link.unlink()
    elif link.is_dir():
        if any(link.iterdir()):
            raise DiskError(f"{link} is a non-empty directory; cannot link it to {target}")
        link.rmdir()
    elif link.exists():
        raise DiskError(f"{link} exists and is not a directory; cannot link it to {target}")
    link.symlink_to(target)


def already_mounted(layout: Layout) -> Result | None:
    layout.var.mkdir(parents=True, exist_ok=True)
    already = mounts.mounted_at(layout.var, layout.mountinfo)
    if already is None:
        return None
    # A restarted one-shot: /var is in use by now; never touch the disk under it.
    log.info("var_already_mounted", path=str(layout.var), fstype=already)
    return Result("already-mounted", notes=[f"{already} already mounted at {layout.var}"])


def finish(layout: Layout, result: Result) -> Result:
    make_state_dirs(layout)
    cnibin.setup(layout.var, layout.cni_bin, layout.cni_plugins, layout.mountinfo)
    if result.mode == "already-mounted" and layout.report.exists():
        return result  # what PID 1 (or an earlier run) mounted and reported stays reported
    write_report(layout.report, result)
    return result


def mount_disk(node: str, layout: Layout) -> None:
    syscalls.mount(node, layout.var, FSTYPE, VAR_FLAGS)
    log.info("var_mounted", device=node, path=str(layout.var), options="nodev,nosuid,noatime")
    # Pods with Bidirectional mount propagation need a shared /var/lib/kubelet.
    syscalls.make_shared(layout.var)


def mount_installed(found: installed.Candidate, layout: Layout) -> Result | None:
    """Check and mount an EPHEMERAL found by name; None when it is not a usable /var of ours
    (the config path then decides, as on a first boot).

    No blkid, and e2fsck only when its preen mode would check (``ext4sb.fsck_reason``) or
    the kernel refuses the mount: at every boot of an installed node this is on the path
    to containerd, and each process start is dear under emulation."""
    deadline = time.monotonic() + layout.device_wait
    while not os.path.exists(found.partition):  # devtmpfs makes the node right after sysfs
        if time.monotonic() >= deadline:
            log.warning("var_installed_unusable", device=found.partition, reason="no device node")
            return None
        time.sleep(0.05)
    sb = ext4sb.read(found.partition)
    if sb is None or sb.label != LABEL:
        what = "no ext2/3/4 filesystem" if sb is None else f"a filesystem labelled {sb.label!r}"
        log.warning("var_installed_unusable", device=found.partition,
                    reason=f"holds {what}, not {FSTYPE} labelled {LABEL}")
        return None
    reason = ext4sb.fsck_reason(sb, time.time())
    try:
        if reason is None:
            fsck = "clean (superblock)"
            load_ext4(layout)
            try:
                mount_disk(found.partition, layout)
            except OSError as exc:  # bad checksums, a feature the kernel lacks: e2fsck decides
                log.warning("var_mount_refused", device=found.partition, error=str(exc),
                            effect="checking it with e2fsck -p, then mounting again")
                fsck = _install().check(found.partition)
                mount_disk(found.partition, layout)
        else:
            log.info("var_check_needed", device=found.partition, reason=reason)
            fsck = _install().check(found.partition)
            load_ext4(layout)
            mount_disk(found.partition, layout)
    except DiskError as exc:
        log.warning("var_installed_unusable", device=found.partition, reason=str(exc))
        return None
    log.info("var_installed", device=found.partition, disk=found.disk, fsck=fsck,
             note="found by its partition name, without the machine config")
    return Result("disk", device=found.disk, partition=found.partition, action="check",
                  fsck=fsck, found_by="label")


def load_ext4(layout: Layout) -> None:
    """ext4 now, with finit_module: else mount(2) asks the kernel's modprobe helper for it, a
    process start. After the drivers, not beside them: concurrent module loads stalled TCG
    guests (the kernel patches its text for each module's static keys). A failure is a
    warning: mount still loads it."""
    if not layout.load_drivers:
        return
    try:
        kmodules.load([FSTYPE])
    except (OSError, LookupError) as exc:
        log.warning("ext4_not_preloaded", error=str(exc), effect="mount loads it")


def _block_names(sys_block: Path) -> list[str]:
    try:
        return sorted(os.listdir(sys_block))
    except OSError:
        return []


def setup_at_boot(layout: Layout, read_config: Callable[[], dict[str, Any] | None]) -> Result:
    """The var service: an installed /var at once, else wait for the config (``read_config``
    returns None until it exists) and ``setup`` from it. Keeps looking for EPHEMERAL while it
    waits: a controller that probes asynchronously (NVMe, AHCI) shows its disks late."""
    result = already_mounted(layout)
    if result is not None:
        return finish(layout, result)
    if layout.load_drivers:
        drivers.load_storage_drivers(layout.sys_bus)
    look, listed, waited = True, None, 0.0
    while True:
        names = _block_names(layout.sys_block) if look else None
        if look and names != listed:  # rescan only when a block device came or went
            listed = names
            found = installed.find(layout.sys_block, layout.disks)
            if len(found) == 1:
                result = mount_installed(found[0], layout)
                if result is not None:
                    return finish(layout, result)
                look = False  # unusable: the config decides (refuse, or wipe when it says so)
            elif len(found) > 1:
                log.warning("var_installed_ambiguous", partitions=[f.partition for f in found],
                            effect="waiting for the machine config to name the install disk")
                look = False
        config = read_config()
        if config is not None:
            return _install().setup(config, layout)
        if waited == 0:
            why = "no installed /var (partition EPHEMERAL) found"
            log.info("var_waiting_for_config", reason=why)
            sdnotify.try_notify(f"STATUS=waiting for the machine config: {why}")
        # Fast while a boot is under way; a node left without a config is polled once a second.
        delay = layout.config_poll if waited < 30 else max(layout.config_poll, 1.0)
        waited += delay
        time.sleep(delay)


def _install():
    """The config path's module, imported only when it is needed (see its docstring)."""
    from talos_init.disk import install
    return install


def write_report(path: Path, result: Result) -> None:
    """/run/talos/var.json: what was done, for the API and the e2e tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    os.replace(tmp, path)
