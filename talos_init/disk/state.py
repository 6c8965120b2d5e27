"""The STATE partition: found by its GPT name on the install disk, mounted at /system/state.

It holds the stored machine config (``talos_init.userdata.configstore``). Whoever needs it
first mounts it (the userdata service at boot, apid on apply-config); mounting it twice is
no error. A disk installed before STATE existed (EPHEMERAL only) has none: ``find`` then
returns None and the node keeps no config on disk (it boots from talos.config= as before).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from talos_init import mounts, syscalls
from talos_init.disk import FSTYPE, STATE_LABEL, installed
from talos_init.log import get_logger

log = get_logger("disk")

MOUNTPOINT = Path("/system/state")
FLAGS = syscalls.MS_NODEV | syscalls.MS_NOSUID | syscalls.MS_NOEXEC | syscalls.MS_NOATIME


class StateError(Exception):
    """STATE exists but cannot be used; the message names the device."""


def find(sys_block: Path = Path("/sys/class/block"), disks: tuple[str, ...] | None = None,
         dev: str = "/dev") -> installed.Candidate | None:
    """The one partition named STATE, None when there is none; two are an error (never guessed)."""
    found = installed.find(sys_block, disks, dev, name=STATE_LABEL)
    if len(found) > 1:
        raise StateError(f"{len(found)} partitions named {STATE_LABEL}: "
                         f"{', '.join(c.partition for c in found)}; not guessing which holds the config")
    return found[0] if found else None


def ensure_mounted(mountpoint: Path = MOUNTPOINT, sys_block: Path = Path("/sys/class/block"),
                   disks: tuple[str, ...] | None = None, dev: str = "/dev",
                   mountinfo: str = "/proc/self/mountinfo") -> Path | None:
    """Mount STATE at ``mountpoint`` unless it is; the mountpoint, or None without STATE."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    # One mounter at a time (userdata and apid may both get here): a lock beside the mountpoint.
    lock = os.open(str(mountpoint.parent / f".{mountpoint.name}.lock"),
                   os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if mounts.mounted_at(mountpoint, mountinfo) is not None:
            return mountpoint
        found = find(sys_block, disks, dev)
        if found is None:
            return None
        try:
            syscalls.mount(found.partition, mountpoint, FSTYPE, FLAGS)
        except OSError as exc:
            if exc.errno == errno.EBUSY and mounts.mounted_at(mountpoint, mountinfo):
                return mountpoint
            raise StateError(f"{found.partition} ({STATE_LABEL}): cannot mount at "
                             f"{mountpoint}: {exc}") from None
        log.info("state_mounted", device=found.partition, path=str(mountpoint))
        return mountpoint
    finally:
        os.close(lock)
