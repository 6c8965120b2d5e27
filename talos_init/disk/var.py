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
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


from talos_init import mounts, sdnotify, syscalls
from talos_init.disk import blockdev, drivers, gpt, installed
from talos_init.disk.blockdev import Disk, DiskError
from talos_init.disk.plan import FSTYPE, LABEL, Action, decide, fsck_verdict
from talos_init.log import get_logger
from talos_init.toolpath import ToolMissing, tool

if TYPE_CHECKING:
    import pyudev

log = get_logger("disk")

VAR_FLAGS = syscalls.MS_NODEV | syscalls.MS_NOSUID | syscalls.MS_NOATIME
# Directories the node services keep their state in (relative to /var), with modes.
STATE_DIRS = {"lib/containerd": 0o711, "lib/kubelet": 0o700, "lib/kubernetes": 0o755,
              "log": 0o755, "lib/cni": 0o755}


@dataclass
class Layout:
    """Where things live; tests point these into a temp dir."""

    var: Path = Path("/var")
    etc: Path = Path("/etc")
    report: Path = Path("/run/talos/var.json")
    mountinfo: str = "/proc/self/mountinfo"
    device_wait: float = 10.0
    sys_block: Path = Path("/sys/class/block")
    sys_bus: Path = Path("/sys/bus")
    disks: tuple[str, ...] | None = None  # name patterns searched for EPHEMERAL (None: all disks)
    load_drivers: bool = True
    config_poll: float = 0.2  # seconds between looks for config.json (and a late disk)


@dataclass
class Result:
    mode: str  # disk | ephemeral | already-mounted
    device: str | None = None
    partition: str | None = None
    action: str | None = None
    fsck: str | None = None
    found_by: str | None = None  # "label": before the machine config; "config": install.disk
    notes: list[str] = field(default_factory=list)


def choose_disk(install: dict[str, Any], context: pyudev.Context, wait: float) -> Disk | None:
    """machine.install.disk, else the first disk matching install.diskSelector, else None."""
    if install.get("disk"):
        return blockdev.find_by_path(context, install["disk"], wait)
    selector = install.get("diskSelector")
    if selector:
        disk = blockdev.find_by_selector(context, selector)
        if disk is None:
            raise DiskError(f"machine.install.diskSelector {selector}: no disk matches")
        return disk
    return None


def _read_gpt(disk: Disk) -> list[gpt.Partition] | None:
    try:
        return gpt.read(disk.devnode, disk.sector)
    except (gpt.GptError, OSError) as exc:
        log.warning("gpt_unreadable", disk=disk.devnode, error=str(exc))
        return None


def _partition(disk: Disk) -> gpt.Partition:
    blockdev.run(["sgdisk", "--clear", "--new=1:0:0", "--typecode=1:8300",
                  f"--change-name=1:{LABEL}", disk.devnode], f"{disk}: partitioning")
    parts = gpt.read(disk.devnode, disk.sector)
    ours = [p for p in parts if p.name == LABEL]
    if not ours:
        raise DiskError(f"{disk}: sgdisk succeeded but partition {LABEL} is not in the table")
    return ours[0]


def _format(node: str) -> None:
    blockdev.run(["mkfs.ext4", "-F", "-q", "-L", LABEL, node], f"{node}: formatting")


def _check(node: str) -> str:
    try:
        e2fsck = tool("e2fsck")
    except ToolMissing as exc:
        raise DiskError(f"{node}: cannot check: {exc}") from None
    r = subprocess.run([e2fsck, "-p", node], capture_output=True, text=True)
    ok, what = fsck_verdict(r.returncode)
    output = " | ".join((r.stdout + r.stderr).strip().splitlines()[-4:])
    log.info("var_checked", device=node, e2fsck_status=r.returncode, result=what, output=output)
    if not ok:
        raise DiskError(f"{node}: not mounting /var: {what} (e2fsck -p status {r.returncode}: "
                        f"{output}). Check the disk from another machine with e2fsck -f, "
                        "or set machine.install.wipe: true to erase it")
    return what


def prepare(disk: Disk, wipe: bool, wait: float) -> tuple[str, Result]:
    """Bring the disk to a checked ext4 filesystem; returns its device node."""
    disk_sig = blockdev.probe(disk.devnode)
    parts = _read_gpt(disk) if disk_sig.get("PTTYPE") == "gpt" else None
    part_sig, part_zeroed = None, False
    ours = next((p for p in parts or [] if p.name == LABEL), None)
    node = None
    if ours is not None:  # even with wipe: an installed /var is never wiped
        try:
            node = blockdev.ensure_partition_node(disk, ours, wait)
            part_sig = blockdev.probe(node)
            part_zeroed = not part_sig.get("TYPE") and blockdev.is_zeroed(node)
        except DiskError:
            if not wipe:
                raise
            node = None  # unreadable: decide() sees no filesystem, and wipe applies
    plan = decide(disk.devnode, disk_sig, parts, part_sig, wipe, part_zeroed)
    log.info("var_plan", disk=disk.devnode, action=plan.action.value, reason=plan.reason)
    result = Result("disk", device=disk.devnode, action=plan.action.value, found_by="config")
    action = plan.action
    if action is Action.REFUSE:
        raise DiskError(plan.reason)
    if action in (Action.CHECK, Action.CHECK_WHOLE):
        node = node if action is Action.CHECK else disk.devnode
        assert node is not None
        try:
            result.fsck = _check(node)
        except DiskError as exc:
            if not wipe:
                raise
            # Installed but unusable: for install.wipe that is no /var yet.
            log.warning("var_unusable", device=node, error=str(exc), effect="wiping the disk")
            action = Action.WIPE
            result.action = action.value
    if action in (Action.WIPE, Action.PARTITION):
        if action is Action.WIPE:
            log.warning("var_wiping", disk=disk.devnode,
                        note="machine.install.wipe is true and the disk holds no usable /var "
                             "(an installed EPHEMERAL that checks clean is never wiped)")
            blockdev.zero_ends(disk)
        node = blockdev.ensure_partition_node(disk, _partition(disk), wait)
        _format(node)
        result.fsck = "new filesystem"
    elif action is Action.FORMAT:
        assert node is not None
        _format(node)
        result.fsck = "new filesystem"
    assert node is not None
    result.partition = node
    log.info("var_prepared", device=node, action=action.value, fsck=result.fsck)
    return node, result


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


def _already_mounted(layout: Layout) -> Result | None:
    layout.var.mkdir(parents=True, exist_ok=True)
    already = mounts.mounted_at(layout.var, layout.mountinfo)
    if already is None:
        return None
    # A restarted one-shot: /var is in use by now; never touch the disk under it.
    log.info("var_already_mounted", path=str(layout.var), fstype=already)
    return Result("already-mounted", notes=[f"{already} already mounted at {layout.var}"])


def _finish(layout: Layout, result: Result) -> Result:
    make_state_dirs(layout)
    write_report(layout.report, result)
    return result


def _mount_disk(node: str, layout: Layout) -> None:
    syscalls.mount(node, layout.var, FSTYPE, VAR_FLAGS)
    log.info("var_mounted", device=node, path=str(layout.var), options="nodev,nosuid,noatime")
    # Pods with Bidirectional mount propagation need a shared /var/lib/kubelet.
    syscalls.make_shared(layout.var)


def setup(config: dict[str, Any] | None, layout: Layout,
          context: pyudev.Context | None = None) -> Result:
    """/var from the machine config: install.disk (or diskSelector), else tmpfs."""
    result = _already_mounted(layout)
    if result is None:
        install = ((config or {}).get("machine") or {}).get("install") or {}
        disk = choose_disk(install, context or blockdev.udev_context(), layout.device_wait)
        if disk is None:
            syscalls.mount("tmpfs", layout.var, "tmpfs", syscalls.MS_NODEV | syscalls.MS_NOSUID,
                           "mode=0755")
            syscalls.make_shared(layout.var)
            log.warning("var_ephemeral", path=str(layout.var),
                        reason="no machine.install.disk or diskSelector in the config",
                        effect="/var is tmpfs: containers, images and logs are lost at reboot")
            result = Result("ephemeral", notes=["/var is tmpfs; nothing survives a reboot"])
        else:
            node, result = prepare(disk, bool(install.get("wipe")), layout.device_wait)
            _mount_disk(node, layout)
    return _finish(layout, result)


def mount_installed(found: installed.Candidate, layout: Layout) -> Result | None:
    """Check and mount an EPHEMERAL found by name; None when it is not a usable /var of ours
    (the config path then decides, as on a first boot)."""
    deadline = time.monotonic() + layout.device_wait
    while not os.path.exists(found.partition):  # devtmpfs makes the node right after sysfs
        if time.monotonic() >= deadline:
            log.warning("var_installed_unusable", device=found.partition, reason="no device node")
            return None
        time.sleep(0.05)
    try:
        sig = blockdev.probe(found.partition)
        if sig.get("TYPE") != FSTYPE or sig.get("LABEL") != LABEL:
            log.warning("var_installed_unusable", device=found.partition,
                        reason=f"holds {sig.get('TYPE') or 'no filesystem'} labelled "
                               f"{sig.get('LABEL')!r}, not {FSTYPE} labelled {LABEL}")
            return None
        fsck = _check(found.partition)
    except DiskError as exc:
        log.warning("var_installed_unusable", device=found.partition, reason=str(exc))
        return None
    _mount_disk(found.partition, layout)
    log.info("var_installed", device=found.partition, disk=found.disk,
             note="found by its partition name, without the machine config")
    return Result("disk", device=found.disk, partition=found.partition, action=Action.CHECK.value,
                  fsck=fsck, found_by="label")


def _block_names(sys_block: Path) -> list[str]:
    try:
        return sorted(os.listdir(sys_block))
    except OSError:
        return []


def setup_at_boot(layout: Layout, read_config: Callable[[], dict[str, Any] | None]) -> Result:
    """The var service: an installed /var at once, else wait for the config (``read_config``
    returns None until it exists) and ``setup`` from it. Keeps looking for EPHEMERAL while it
    waits: a controller that probes asynchronously (NVMe, AHCI) shows its disks late."""
    result = _already_mounted(layout)
    if result is not None:
        return _finish(layout, result)
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
                    return _finish(layout, result)
                look = False  # unusable: the config decides (refuse, or wipe when it says so)
            elif len(found) > 1:
                log.warning("var_installed_ambiguous", partitions=[f.partition for f in found],
                            effect="waiting for the machine config to name the install disk")
                look = False
        config = read_config()
        if config is not None:
            return setup(config, layout)
        if waited == 0:
            why = "no installed /var (partition EPHEMERAL) found"
            log.info("var_waiting_for_config", reason=why)
            sdnotify.try_notify(f"STATUS=waiting for the machine config: {why}")
        # Fast while a boot is under way; a node left without a config is polled once a second.
        delay = layout.config_poll if waited < 30 else max(layout.config_poll, 1.0)
        waited += delay
        time.sleep(delay)


def write_report(path: Path, result: Result) -> None:
    """/run/talos/var.json: what was done, for the API and the e2e tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1) + "\n")
    os.replace(tmp, path)
