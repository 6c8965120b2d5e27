"""Block devices: find the install disk through udev, probe signatures, tell the kernel
about partitions, and run the filesystem tools. All paths come in as arguments."""

from __future__ import annotations

import ctypes
import fcntl
import fnmatch
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talos_init.disk import NOT_DISKS, DiskError, gpt  # noqa: F401 (DiskError: re-exported)
from talos_init.toolpath import ToolMissing, tool

if TYPE_CHECKING:  # imported where used: an installed /var is found without udev
    import pyudev

BLKRRPART = 0x125F
BLKPG = 0x1269
BLKPG_ADD_PARTITION = 1
@dataclass(frozen=True)
class Disk:
    devnode: str  # /dev/vda
    sys_name: str  # vda
    sector: int  # logical block size in bytes
    size: int  # bytes
    device: pyudev.Device

    def __str__(self) -> str:
        return self.devnode


def udev_context() -> pyudev.Context:
    """pyudev's Context, also where ctypes.util.find_library finds nothing.

    find_library needs ldconfig's cache, gcc or ld; an initramfs has none of them,
    so pyudev would report "No library named udev" although libudev.so.1 is there.
    """
    import pyudev

    try:
        return pyudev.Context()
    except ImportError:
        from pyudev._ctypeslib import utils

        found = utils.find_library

        def find_library(name: str) -> str | None:
            soname = f"lib{name}.so.1"
            try:
                ctypes.CDLL(soname)
            except OSError:
                return found(name)
            return soname

        utils.find_library = find_library
        return pyudev.Context()


def _disk(device: pyudev.Device) -> Disk:
    sector = int(device.attributes.asint("queue/logical_block_size"))
    size = int(device.attributes.asint("size")) * 512  # sysfs counts 512-byte units
    node = device.device_node or f"/dev/{device.sys_name}"
    return Disk(node, device.sys_name, sector, size, device)


def find_by_path(context: pyudev.Context, path: str, wait: float = 10.0) -> Disk:
    """The whole disk at ``path``; waits up to ``wait`` seconds for it to appear."""
    import pyudev

    deadline = time.monotonic() + wait
    while True:
        try:
            device = pyudev.Devices.from_device_file(context, path)
            break
        except (pyudev.DeviceNotFoundError, OSError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise DiskError(
                    f"machine.install.disk {path}: no such block device ({exc})") from None
            time.sleep(0.1)  # a one-shot child, not PID 1: a short poll is fine here
    if device.subsystem != "block":
        raise DiskError(f"machine.install.disk {path}: not a block device")
    if device.device_type != "disk":
        raise DiskError(f"machine.install.disk {path}: is a {device.device_type}, "
                        "name the whole disk (e.g. /dev/vda, not /dev/vda1)")
    return _disk(device)


SELECTOR_ATTRS = {  # diskSelector field -> sysfs attribute under the disk (relative)
    "modalias": "device/modalias",
    "model": "device/model",
    "serial": "device/serial",
    "wwid": "device/wwid",
}


def _attr(device: pyudev.Device, name: str) -> str:
    try:
        return device.attributes.asstring(name).strip()
    except (KeyError, UnicodeDecodeError, OSError):
        return ""


def matches(device: pyudev.Device, selector: dict[str, Any]) -> bool:
    for key, pattern in selector.items():
        if key in SELECTOR_ATTRS:
            value = (_attr(device, SELECTOR_ATTRS[key])
                     or device.properties.get(f"ID_{key.upper()}") or "")
        elif key == "busPath":
            value = device.parent.device_path if device.parent is not None else ""
            value = value.removeprefix("/devices")
        elif key == "type":
            rotational = _attr(device, "queue/rotational")
            value = ("nvme" if device.sys_name.startswith("nvme") else
                     "sd" if device.sys_name.startswith("mmcblk") else
                     "hdd" if rotational == "1" else "ssd")
        else:
            known = ", ".join(sorted([*SELECTOR_ATTRS, "busPath", "type"]))
            raise DiskError(f"machine.install.diskSelector.{key}: not supported "
                            f"(supported: {known})")
        if not fnmatch.fnmatchcase(value, str(pattern)):
            return False
    return True


def find_by_selector(context: pyudev.Context, selector: dict[str, Any]) -> Disk | None:
    """The first disk (by name) matching every field of ``selector``."""
    found = []
    for device in context.list_devices(subsystem="block", DEVTYPE="disk"):
        if any(fnmatch.fnmatchcase(device.sys_name, p) for p in NOT_DISKS):
            continue
        if _attr(device, "size") in ("", "0"):
            continue
        if matches(device, selector):
            found.append(device)
    found.sort(key=lambda d: (len(d.sys_name), d.sys_name))  # vda before vdaa
    return _disk(found[0]) if found else None


def probe(devnode: str) -> dict[str, str]:
    """Signatures on ``devnode`` (blkid low-level probe, no cache); {} when blank."""
    try:
        blkid = tool("blkid")
    except ToolMissing as exc:
        raise DiskError(f"{devnode}: cannot probe: {exc}") from None
    r = subprocess.run([blkid, "-p", "-o", "export", devnode], capture_output=True, text=True)
    if r.returncode == 2:
        return {}
    if r.returncode == 8:
        raise DiskError(f"{devnode}: more than one signature found (blkid: ambivalent result); "
                        "refusing to guess what it holds")
    if r.returncode != 0:
        raise DiskError(f"{devnode}: blkid failed ({r.returncode}): {r.stderr.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition("=")
        out[key] = value
    return out


def partition_node(disk: Disk, number: int) -> str | None:
    """The device node of partition ``number`` if the kernel knows it."""
    for child in disk.device.children:
        if child.device_type == "partition" and _attr(child, "partition") == str(number):
            return child.device_node or f"/dev/{child.sys_name}"
    return None


class _BlkpgPartition(ctypes.Structure):
    _fields_ = [("start", ctypes.c_longlong), ("length", ctypes.c_longlong),
                ("pno", ctypes.c_int), ("devname", ctypes.c_char * 64),
                ("volname", ctypes.c_char * 64)]


class _BlkpgArg(ctypes.Structure):
    _fields_ = [("op", ctypes.c_int), ("flags", ctypes.c_int), ("datalen", ctypes.c_int),
                ("data", ctypes.c_void_p)]


def ensure_partition_node(disk: Disk, part: gpt.Partition, wait: float = 10.0,
                          reread: bool = True) -> str:
    """Make the kernel know ``part`` and return its device node.

    Asks for a table re-read first (unless ``reread`` is False: a re-read drops the
    partitions BLKPG added before); when that does not produce it (a kernel without GPT
    parsing, or the disk was busy) the partition is added with BLKPG.
    """
    node = partition_node(disk, part.number)
    if node is None and reread:
        with open(disk.devnode, "rb") as f:
            try:
                fcntl.ioctl(f.fileno(), BLKRRPART)
            except OSError:
                pass  # EBUSY and friends: BLKPG below covers it
        node = partition_node(disk, part.number)
    if node is None:
        data = _BlkpgPartition(part.start_bytes(disk.sector), part.size_bytes(disk.sector),
                               part.number, b"", b"")
        arg = _BlkpgArg(BLKPG_ADD_PARTITION, 0, ctypes.sizeof(data),
                        ctypes.cast(ctypes.pointer(data), ctypes.c_void_p))
        with open(disk.devnode, "rb") as f:
            try:
                fcntl.ioctl(f.fileno(), BLKPG, bytes(arg))
            except OSError as exc:
                raise DiskError(f"{disk}: cannot add partition {part.number} "
                                f"to the kernel: {exc}") from None
        node = partition_node(disk, part.number)
    if node is None:
        raise DiskError(f"{disk}: partition {part.number} is in the table "
                        "but the kernel has no device for it")
    _check_geometry(disk, part, node)
    deadline = time.monotonic() + wait
    while not os.path.exists(node):  # devtmpfs/udev creates the node shortly after
        if time.monotonic() >= deadline:
            raise DiskError(f"{disk}: partition device {node} did not appear within {wait:g}s")
        time.sleep(0.05)
    return node


def _check_geometry(disk: Disk, part: gpt.Partition, node: str) -> None:
    """The kernel's partition must be the one in the table (a failed re-read leaves old bounds)."""
    sysfs = Path("/sys/class/block") / os.path.basename(node)
    try:
        start = int((sysfs / "start").read_text()) * 512  # sysfs counts 512-byte sectors
        size = int((sysfs / "size").read_text()) * 512
    except (OSError, ValueError):
        return  # no sysfs view: nothing to compare
    if (start, size) != (part.start_bytes(disk.sector), part.size_bytes(disk.sector)):
        raise DiskError(f"{disk}: the kernel's {node} (start {start}, size {size} bytes) does not "
                        f"match the partition table ({part.start_bytes(disk.sector)}, "
                        f"{part.size_bytes(disk.sector)}); the table could not be re-read, "
                        "reboot to use the new table")


def run(argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
    """Run a filesystem tool (looked up by name); DiskError with its last lines on failure."""
    try:
        argv = [tool(argv[0]), *argv[1:]]
    except ToolMissing as exc:
        raise DiskError(f"{what}: {exc}") from None
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise DiskError(f"{what}: {argv[0]} exited with {r.returncode}: {' | '.join(tail)}")
    return r


def is_zeroed(devnode: str, length: int = 1 << 20) -> bool:
    """True when the first ``length`` bytes are all zero: nothing was ever written there."""
    with open(devnode, "rb") as f:
        data = f.read(length)
    return data.count(0) == len(data)


def zero_ends(disk: Disk, span: int = 1 << 20) -> None:
    """Erase old signatures (partition tables, superblocks) at both ends of the disk."""
    with open(disk.devnode, "r+b") as f:
        zeros = bytes(min(span, disk.size))
        f.write(zeros)
        f.seek(max(0, disk.size - span))
        f.write(zeros[: disk.size - max(0, disk.size - span)])
        f.flush()
        os.fsync(f.fileno())
