"""Erase partitions at the end of a reset: their first and last MiB (superblocks, the FAT,
ext4's journal start), after everything is unmounted and before reboot(2).

PID 1's shutdown runs it (``osctl reset``); os only, no tools, nothing heavy to import.
The next boot finds those partitions blank and sets them up as on a first boot.
"""

from __future__ import annotations

import os
import stat

SPAN = 1 << 20


class WipeRefused(ValueError):
    pass


def check(devices: object, dev: str = "/dev/") -> list[str]:
    """The device list of a reset request, each an existing block device under /dev."""
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise WipeRefused("'wipe' must be a list of device paths")
    for d in devices:
        if not d.startswith(dev) or ".." in d:
            raise WipeRefused(f"{d!r}: not a device under {dev}")
        try:
            if not stat.S_ISBLK(os.stat(d).st_mode):
                raise WipeRefused(f"{d}: not a block device")
        except FileNotFoundError:
            raise WipeRefused(f"{d}: no such device") from None
    return list(devices)


def wipe(device: str, span: int = SPAN) -> int:
    """Zero the first and last ``span`` bytes of ``device``, fsync; returns its size."""
    fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        zeros = bytes(min(span, size))
        for offset in sorted({0, max(0, size - len(zeros))}):
            os.pwrite(fd, zeros, offset)
        os.fsync(fd)
        return size
    finally:
        os.close(fd)
