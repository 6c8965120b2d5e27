"""Capabilities and no_new_privs through prctl/capset: imported in service children only."""

from __future__ import annotations

import ctypes
import os

PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(*args: int) -> int:
    rc = _libc.prctl(*[ctypes.c_ulong(a) for a in args])
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def drop_bounding(keep: frozenset[int]) -> None:
    for cap in range(last_cap() + 1):
        if cap not in keep:
            _prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


def keep_caps_on_setuid() -> None:
    _prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def set_capabilities(keep: frozenset[int], ambient: bool) -> None:
    """Effective, permitted and inheritable become ``keep``; ambient too for non-root."""
    mask = sum(1 << c for c in keep)
    data = (_Data * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = data[i].inheritable = word
    if _libc.capset(ctypes.byref(_Header(CAP_VERSION_3, 0)), data) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if ambient:
        for cap in sorted(keep):
            _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0)


def no_new_privs() -> None:
    _prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
