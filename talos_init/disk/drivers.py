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

import os

from talos_init import kmodules
from talos_init.log import get_logger

# No re, pathlib or typing here: the kernel module loader (talos_init.preload) runs this before
# PID 1 imports them. Paths are str or os.PathLike.
TYPE_CHECKING = False  # typing's own constant, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from talos_init.kmodules import PathArg

log = get_logger("disk")


def pci_storage(modalias: str) -> bool:
    """PCI base class 01, mass storage: SCSI, IDE, SATA, NVMe, virtio-blk (``pci:...bc01sc...``)."""
    return modalias.startswith("pci:") and "bc01sc" in modalias


def virtio_storage(modalias: str) -> bool:
    """virtio device 2 (block) or 8 (SCSI)."""
    return modalias.startswith(("virtio:d00000002v", "virtio:d00000008v"))


STAGES: tuple[tuple[str, Callable[[str], bool]], ...] = (("pci", pci_storage),
                                                          ("virtio", virtio_storage))


def unbound_modaliases(sys_bus: PathArg, bus: str, keep: Callable[[str], object]) -> list[str]:
    """Modaliases of the devices on ``bus`` that ``keep`` accepts and no driver has bound yet."""
    out: list[str] = []
    devices = os.path.join(sys_bus, bus, "devices")
    try:
        names = sorted(os.listdir(devices))
    except OSError:
        return out
    for name in names:
        dev = os.path.join(devices, name)
        try:
            with open(os.path.join(dev, "modalias"), encoding="utf-8") as f:
                alias = f.read().strip()
        except OSError:
            continue
        if keep(alias) and not os.path.exists(os.path.join(dev, "driver")):
            out.append(alias)
    return out


def load_storage_drivers(sys_bus: PathArg = "/sys/bus", root: PathArg = "/") -> list[str]:
    """Load the storage drivers bus by bus (a controller's driver makes the disks appear) with
    finit_module, no modprobe process; returns the modaliases asked for. Never raises: udev
    remains the fallback."""
    asked: list[str] = []
    for bus, keep in STAGES:
        aliases = unbound_modaliases(sys_bus, bus, keep)
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
