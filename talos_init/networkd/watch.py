"""Wake up when a file appears or is replaced, through inotify on its directory (ctypes, no polling).

Watching the directory, not the file, sees both an atomic rename into place
(IN_MOVED_TO) and a direct write (IN_CLOSE_WRITE), and works before the file
exists.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
from collections.abc import Callable
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len

_libc = ctypes.CDLL(None, use_errno=True)


class FileWatch:
    """Calls `callback()` each time `path` is written or renamed into place."""

    def __init__(self, path: Path, callback: Callable[[], None]):
        self.path = path
        self.callback = callback
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        wd = _libc.inotify_add_watch(
            self.fd, str(path.parent).encode(), IN_CLOSE_WRITE | IN_MOVED_TO
        )
        if wd < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch({path.parent}): {os.strerror(err)}")
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        hit = False
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if name.decode(errors="replace") == self.path.name:
                hit = True
        if hit:
            self.callback()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)
