"""apid's read looks at the file type before it opens anything (issue #22, lead)."""

from __future__ import annotations

import ctypes
import os
import stat
import struct

import pytest

IN_OPEN = 0x20
IN_NONBLOCK = os.O_NONBLOCK


class OpenWatch:
    """inotify IN_OPEN on one path: whether anyone opened it since the watch began."""

    def __init__(self, path: str):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(IN_NONBLOCK)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        assert libc.inotify_add_watch(self.fd, path.encode(), IN_OPEN) >= 0

    def opened(self) -> bool:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return False  # no event queued: nobody opened it
        _wd, mask, _cookie, _len = struct.unpack_from("iIII", data, 0)
        return bool(mask & IN_OPEN)

    def close(self) -> None:
        os.close(self.fd)


@pytest.mark.parametrize("kind", ["fifo", "char device"])
def test_read_refuses_special_files_without_opening_them(node, kind):
    """A FIFO or a device node (here one like /dev/null) is refused by its type; it is never opened."""
    path = node.tmp / kind.replace(" ", "-")
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    watch = OpenWatch(str(path))
    try:
        r = node.osctl(node.osctlconfig("admin", ["os:admin"]), "read", str(path))
        assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr
        assert not watch.opened(), f"apid opened the {kind}"
        (node.tmp / "plain").write_text("ok\n")
        r = node.osctl(node.osctlconfig("admin", ["os:admin"]), "read", str(node.tmp / "plain"))
        assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    finally:
        watch.close()
