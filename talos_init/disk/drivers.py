"""Load the storage drivers now, before udev's coldplug gets to them.

The var service looks for an installed /var as soon as the node starts, before
udev has loaded anything: it loads the drivers of the storage controllers'
modaliases (PCI base class 01, mass storage; virtio_pci drives every virtio
PCI function), then of the virtio block and SCSI devices they expose, matched
in modules.alias and loaded with finit_module (``talos_init.kmodules``): no
modprobe process. A device already bound to a driver is skipped. The kernel
serializes module loads, so udev asking for the same modules later costs
nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from talos_init import kmodules
from talos_init.log import get_logger

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


def load_storage_drivers(sys_bus: Path = Path("/sys/bus"), root: Path = Path("/")) -> list[str]:
    """Load the storage drivers bus by bus (a controller's driver makes the disks appear) with
    finit_module, no modprobe process; returns the modaliases asked for. Never raises: udev
    remains the fallback."""
    asked: list[str] = []
    for bus, pattern in STAGES:
        aliases = unbound_modaliases(sys_bus, bus, pattern.match)
        if not aliases:
            continue
        asked += aliases
        try:
            done, unmatched = kmodules.load_for_aliases(aliases, root)
        except (OSError, LookupError) as exc:  # an index missing, a module refusing to load
            log.warning("storage_drivers_not_loaded", bus=bus, aliases=aliases, error=str(exc))
            continue
        if unmatched:  # no driver in the image (QEMU's IDE controller): udev finds none either
            log.info("storage_drivers_missing", bus=bus, no_driver_for=unmatched)
        log.info("storage_drivers_loaded", bus=bus,
                 modules=[m for m, how in done.items() if how == "loaded"])
    return asked
