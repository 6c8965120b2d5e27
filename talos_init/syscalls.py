"""The few system calls PID 1 needs that ``os`` lacks: mount, umount2, reboot, prctl, inotify,
finit_module.

Thin ctypes wrappers over glibc, already loaded in the interpreter
(``CDLL(None)``: no ``ctypes.util`` search, which costs 2 MiB). Every failure
raises ``OSError`` carrying errno and the path or command it was about.
"""

from __future__ import annotations

import ctypes
import os

# mount(2) flags, from <linux/mount.h>.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21

# umount2(2) flags.
MNT_FORCE = 1
MNT_DETACH = 2

# reboot(2) commands, glibc's RB_* names (<sys/reboot.h>).
RB_AUTOBOOT = 0x01234567
RB_HALT_SYSTEM = 0xCDEF0123
RB_POWER_OFF = 0x4321FEDC
RB_DISABLE_CAD = 0  # LINUX_REBOOT_CMD_CAD_OFF: Ctrl-Alt-Del sends SIGINT to PID 1
RB_ENABLE_CAD = 0x89ABCDEF

# unshare(2) flags (os.unshare arrives only in Python 3.12).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000

PR_SET_CHILD_SUBREAPER = 36

# inotify(7) masks.
IN_ATTRIB = 0x00000004
IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_Q_OVERFLOW = 0x00004000

# finit_module(2) has no glibc wrapper: syscall(2) by number (the image is x86_64 only).
SYS_FINIT_MODULE = 313

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.reboot.argtypes = [ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


def _b(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _raise(what: str, path: str | os.PathLike[str] | None = None) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}", None if path is None else os.fspath(path))


def mount(source: str | None, target: str | os.PathLike[str], fstype: str | None,
          flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data or None)) != 0:
        _raise(f"mount {fstype or source}", target)


def make_shared(target: str | os.PathLike[str]) -> None:
    """Mounts made below ``target`` propagate (kubelet's Bidirectional mounts need it)."""
    mount(None, target, None, MS_SHARED)


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        _raise("umount", target)


def reboot(command: int) -> None:
    """reboot(2). With RB_AUTOBOOT/RB_POWER_OFF/RB_HALT_SYSTEM it does not return."""
    # ctypes wants a signed int; the kernel compares the 32-bit pattern.
    signed = command - (1 << 32) if command >= 1 << 31 else command
    if _libc.reboot(signed) != 0:
        _raise(f"reboot {command:#x}")


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        _raise(f"unshare {flags:#x}")


def set_ctrl_alt_del(enabled: bool) -> None:
    """Off: the kernel sends SIGINT to PID 1 instead of rebooting at once."""
    reboot(RB_ENABLE_CAD if enabled else RB_DISABLE_CAD)


def set_child_subreaper(on: bool = True) -> None:
    """Orphans of our descendants are re-parented to us instead of to PID 1."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        _raise("prctl PR_SET_CHILD_SUBREAPER")


def inotify_init() -> int:
    """A non-blocking, close-on-exec inotify fd."""
    fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        _raise("inotify_init1")
    return fd


def inotify_add_watch(fd: int, path: str | os.PathLike[str], mask: int) -> int:
    wd = _libc.inotify_add_watch(fd, _b(path), mask)
    if wd < 0:
        _raise("inotify_add_watch", path)
    return wd


def inotify_rm_watch(fd: int, wd: int) -> None:
    _libc.inotify_rm_watch(fd, wd)  # a watch already gone (its directory removed) is fine


def finit_module(fd: int, params: str = "", path: str | os.PathLike[str] | None = None) -> None:
    """Load the kernel module open at ``fd`` (``path`` only names it in the error)."""
    if _libc.syscall(ctypes.c_long(SYS_FINIT_MODULE), ctypes.c_int(fd), ctypes.c_char_p(params.encode()),
                     ctypes.c_int(0)) != 0:
        _raise("finit_module", path)


def sync() -> None:
    os.sync()
