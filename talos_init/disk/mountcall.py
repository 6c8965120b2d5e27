"""mount(2) through ctypes, for /var.

A minimal local copy until PID 1's ``talos_init.syscalls`` (which lacks
MS_NOATIME) is on main; the lead folds it in there.
"""

from __future__ import annotations

import ctypes
import os

MS_NOSUID = 2
MS_NODEV = 4
MS_NOATIME = 1024
MS_SHARED = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source: str, target: str | os.PathLike[str], fstype: str, flags: int,
          data: str | None = None) -> None:
    if _libc.mount(os.fsencode(source), os.fsencode(target), fstype.encode(), flags,
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} {source}: {os.strerror(err)}", os.fspath(target))


def make_shared(target: str | os.PathLike[str]) -> None:
    """Mark a mount point shared, so mounts made below it propagate (kubelet's Bidirectional)."""
    if _libc.mount(None, os.fsencode(target), None, MS_SHARED, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"make shared: {os.strerror(err)}", os.fspath(target))


def umount(target: str | os.PathLike[str]) -> None:
    if _libc.umount2(os.fsencode(target), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount: {os.strerror(err)}", os.fspath(target))


def mounted_at(target: str | os.PathLike[str],
               mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The filesystem type mounted exactly at ``target``, or None."""
    want = os.path.realpath(target)
    found = None
    with open(mountinfo, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].encode().decode("unicode_escape")  # octal escapes such as \040
            if mp == want:
                found = fields[fields.index("-") + 1]  # the last mount there is the visible one
    return found
