"""Set up /var: the install disk's data partition, or tmpfs when there is no disk.

Order: choose the disk, probe it, decide (``plan``), act (partition, format,
check), mount with nodev,nosuid,noatime, create the directories the node
services need, and link /etc/kubernetes to its state under /var. Every
refusal raises ``DiskError`` with a message naming the disk and what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyudev

from talos_init import mounts, syscalls
from talos_init.disk import blockdev, gpt
from talos_init.disk.blockdev import Disk, DiskError
from talos_init.disk.plan import FSTYPE, LABEL, Action, decide, fsck_verdict
from talos_init.log import get_logger
from talos_init.toolpath import ToolMissing, tool

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


@dataclass
class Result:
    mode: str  # disk | ephemeral | already-mounted
    device: str | None = None
    partition: str | None = None
    action: str | None = None
    fsck: str | None = None
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
    if ours is not None and not wipe:
        node = blockdev.ensure_partition_node(disk, ours, wait)
        part_sig = blockdev.probe(node)
        part_zeroed = not part_sig.get("TYPE") and blockdev.is_zeroed(node)
    plan = decide(disk.devnode, disk_sig, parts, part_sig, wipe, part_zeroed)
    log.info("var_plan", disk=disk.devnode, action=plan.action.value, reason=plan.reason)
    result = Result("disk", device=disk.devnode, action=plan.action.value)
    if plan.action is Action.REFUSE:
        raise DiskError(plan.reason)
    if plan.action in (Action.WIPE, Action.PARTITION):
        if plan.action is Action.WIPE:
            log.warning("var_wiping", disk=disk.devnode,
                        note="machine.install.wipe is true: every boot erases /var until it is "
                             "set back to false")
            blockdev.zero_ends(disk)
        node = blockdev.ensure_partition_node(disk, _partition(disk), wait)
        _format(node)
        result.fsck = "new filesystem"
    elif plan.action is Action.FORMAT:
        assert node is not None
        _format(node)
        result.fsck = "new filesystem"
    elif plan.action is Action.CHECK:
        assert node is not None
        result.fsck = _check(node)
    elif plan.action is Action.CHECK_WHOLE:
        node = disk.devnode
        result.fsck = _check(node)
    assert node is not None
    result.partition = node
    log.info("var_prepared", device=node, action=plan.action.value, fsck=result.fsck)
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


def setup(config: dict[str, Any] | None, layout: Layout,
          context: pyudev.Context | None = None) -> Result:
    install = ((config or {}).get("machine") or {}).get("install") or {}
    layout.var.mkdir(parents=True, exist_ok=True)
    already = mounts.mounted_at(layout.var, layout.mountinfo)
    if already is not None:
        # A restarted one-shot: /var is in use by now; never touch the disk under it.
        log.info("var_already_mounted", path=str(layout.var), fstype=already)
        result = Result("already-mounted", notes=[f"{already} already mounted at {layout.var}"])
    else:
        disk = choose_disk(install, context or blockdev.udev_context(), layout.device_wait)
        if disk is None:
            syscalls.mount("tmpfs", layout.var, "tmpfs", syscalls.MS_NODEV | syscalls.MS_NOSUID,
                            "mode=0755")
            log.warning("var_ephemeral", path=str(layout.var),
                        reason="no machine.install.disk or diskSelector in the config",
                        effect="/var is tmpfs: containers, images and logs are lost at reboot")
            result = Result("ephemeral", notes=["/var is tmpfs; nothing survives a reboot"])
        else:
            node, result = prepare(disk, bool(install.get("wipe")), layout.device_wait)
            syscalls.mount(node, layout.var, FSTYPE, VAR_FLAGS)
            log.info("var_mounted", device=node, path=str(layout.var),
                     options="nodev,nosuid,noatime")
        # Pods with Bidirectional mount propagation need a shared /var/lib/kubelet.
        syscalls.make_shared(layout.var)
    make_state_dirs(layout)
    write_report(layout.report, result)
    return result


def write_report(path: Path, result: Result) -> None:
    """/run/talos/var.json: what was done, for the API and the e2e tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1) + "\n")
    os.replace(tmp, path)
