"""Block devices an operator may install on, from sysfs (``osctl disks``): name, size,
model, serial and transport, as talosctl's disks lists them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from talos_init import wildcard
from talos_init.disk import NOT_DISKS


def _read(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return value or None


def _transport(name: str, device_path: str) -> str:
    if name.startswith("nvme"):
        return "nvme"
    if name.startswith("vd") or "/virtio" in device_path:
        return "virtio"
    if name.startswith("mmcblk"):
        return "mmc"
    if "/usb" in device_path:
        return "usb"
    if "/ata" in device_path:
        return "sata"
    if "/host" in device_path:
        return "scsi"
    return "unknown"


def list_disks(sys_block: Path = Path("/sys/block")) -> list[dict[str, Any]]:
    out = []
    for entry in sorted(sys_block.iterdir()) if sys_block.is_dir() else []:
        name = entry.name
        if any(wildcard.match(name, p) for p in NOT_DISKS):
            continue
        sectors = _read(entry / "size")
        device_path = os.path.realpath(entry)
        out.append({
            "name": name, "dev": f"/dev/{name}",
            "size": int(sectors) * 512 if sectors and sectors.isdigit() else None,
            "model": _read(entry / "device/model"),
            "serial": _read(entry / "serial") or _read(entry / "device/serial"),
            "transport": _transport(name, device_path),
            "rotational": _read(entry / "queue/rotational") == "1",
            "readonly": _read(entry / "ro") == "1",
        })
    return out
