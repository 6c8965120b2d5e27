"""A first boot's /var, from the machine config: choose the disk, probe it, decide
(``plan``), act (partition, format, check), mount. Every refusal raises
``DiskError`` naming the disk and what to do.

Imported only when there is no installed /var (or it must be checked): the
tools this needs (pyudev, blkid, sgdisk, mkfs, e2fsck) stay off the path of
every later boot, which ``var.setup_at_boot`` takes without them.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

from talos_init import syscalls
from talos_init.disk import FSTYPE, LABEL, DiskError, blockdev, gpt
from talos_init.disk.blockdev import Disk
from talos_init.disk.plan import LAYOUT, Action, PartSpec, decide, fsck_verdict, sgdisk_args
from talos_init.disk.var import Layout, Result, already_mounted, finish, mount_disk
from talos_init.log import get_logger
from talos_init.toolpath import ToolMissing, tool

if TYPE_CHECKING:
    import pyudev

log = get_logger("disk")


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


def _partition(disk: Disk) -> list[gpt.Partition]:
    """A new table with the install layout (EFI, STATE, EPHEMERAL)."""
    try:
        args = sgdisk_args(disk.devnode, disk.size)
    except ValueError as exc:
        raise DiskError(str(exc)) from None
    blockdev.run(["sgdisk", *args], f"{disk}: partitioning")
    parts = gpt.read(disk.devnode, disk.sector)
    missing = [s.name for s in LAYOUT if s.name not in {p.name for p in parts}]
    if missing:
        raise DiskError(f"{disk}: sgdisk succeeded but partition(s) {', '.join(missing)} "
                        "are not in the table")
    return parts


def _format(node: str, spec: PartSpec) -> None:
    if spec.fstype == "vfat":
        argv = ["mkfs.vfat", "-F", "32", "-n", spec.name, node]
    else:
        argv = ["mkfs.ext4", "-F", "-q", "-L", spec.name, node]
    blockdev.run(argv, f"{node}: formatting {spec.name}")


def _format_layout(disk: Disk, parts: list[gpt.Partition], wait: float) -> str:
    """Format each layout partition the table holds, EPHEMERAL last: its filesystem is what
    says "installed", so a boot cut short before it formats them all again. A disk of the
    older layout (EPHEMERAL only) gets EPHEMERAL. Returns EPHEMERAL's node."""
    by_name = {p.name: p for p in parts}
    # Every node first, one table re-read at most: a re-read drops what BLKPG added.
    nodes = [(spec, blockdev.ensure_partition_node(disk, by_name[spec.name], wait, reread=i == 0))
             for i, spec in enumerate(s for s in LAYOUT if s.name in by_name)]
    for spec, node in nodes:
        _format(node, spec)
    return nodes[-1][1]


def check(node: str) -> str:
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
            result.fsck = check(node)
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
        node = _format_layout(disk, _partition(disk), wait)
        result.fsck = "new filesystem"
    elif action is Action.FORMAT:
        assert parts is not None
        node = _format_layout(disk, parts, wait)
        result.fsck = "new filesystem"
    assert node is not None
    result.partition = node
    log.info("var_prepared", device=node, action=action.value, fsck=result.fsck)
    return node, result


def setup(config: dict[str, Any] | None, layout: Layout,
          context: pyudev.Context | None = None) -> Result:
    """/var from the machine config: install.disk (or diskSelector), else tmpfs."""
    result = already_mounted(layout)
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
            mount_disk(node, layout)
    return finish(layout, result)
