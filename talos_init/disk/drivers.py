"""Load the storage drivers now, before udev's coldplug gets to them.

The var service looks for an installed /var as soon as the node starts, before
udev has loaded anything: it modprobes the modaliases of the storage
controllers (PCI base class 01, mass storage; virtio_pci drives every virtio
PCI function), then of the virtio block and SCSI devices they expose. A
device already bound to a driver is skipped. modprobe and the kernel serialize
module loads, so udev asking for the same modules later costs nothing.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from talos_init.log import get_logger
from talos_init.toolpath import ToolMissing, tool

log = get_logger("disk")

PCI_STORAGE = re.compile(r"^pci:.*bc01sc")  # base class 01: SCSI, IDE, SATA, NVMe, virtio-blk
VIRTIO_STORAGE = re.compile(r"^virtio:d0000000[28]v")  # virtio device 2 (block), 8 (SCSI)
STAGES: tuple[tuple[str, re.Pattern[str]], ...] = (("pci", PCI_STORAGE), ("virtio", VIRTIO_STORAGE))


def unbound_modaliases(sys_bus: Path, bus: str, keep: Callable[[str], object]) -> list[str]:
    """Modaliases of the devices on ``bus`` that ``keep`` accepts and no driver has bound yet."""
    out = []
    devices = sys_bus / bus / "devices"
    for dev in sorted(devices.iterdir()) if devices.is_dir() else []:
        try:
            alias = (dev / "modalias").read_text().strip()
        except OSError:
            continue
        if keep(alias) and not (dev / "driver").exists():
            out.append(alias)
    return out


def load_storage_drivers(sys_bus: Path = Path("/sys/bus")) -> list[str]:
    """modprobe the storage drivers bus by bus (a controller's driver makes the disks appear);
    returns the modaliases asked for. Never raises: udev remains the fallback."""
    asked: list[str] = []
    for bus, pattern in STAGES:
        aliases = unbound_modaliases(sys_bus, bus, pattern.match)
        if not aliases:
            continue
        try:
            r = subprocess.run([tool("modprobe"), "-q", "-a", *aliases], capture_output=True,
                               text=True)
        except (ToolMissing, OSError) as exc:
            log.warning("storage_drivers_not_loaded", bus=bus, error=str(exc))
            return asked
        asked += aliases
        if r.returncode != 0:  # no driver in the image for one of them: udev will not find it either
            log.warning("storage_drivers_incomplete", bus=bus, aliases=aliases,
                        modprobe_status=r.returncode, error=r.stderr.strip())
    if asked:
        log.info("storage_drivers_loaded", modaliases=len(asked))
    return asked
