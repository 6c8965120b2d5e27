"""Attach a file to a loop block device, read-only, detached when its last user goes.

``attach`` asks /dev/loop-control for a free device and configures it in one
ioctl (LOOP_CONFIGURE, Linux 5.8+) with LO_FLAGS_AUTOCLEAR: once the file
system mounted from it is unmounted and our descriptor is closed, the kernel
frees the device itself, so shutdown only has to unmount.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from pathlib import Path

# <linux/loop.h>
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_NAME_SIZE = 64

# struct loop_info64 (232 bytes), then struct loop_config: fd, block_size, info, 8 reserved u64.
_INFO64 = f"=QQQQQIIII{LO_NAME_SIZE}s{LO_NAME_SIZE}s32sQQ"
_CONFIG = f"=II{_INFO64[1:]}64x"


def _info(flags: int, name: str) -> bytes:
    return struct.pack(_INFO64, 0, 0, 0, 0, 0, 0, 0, 0, flags,
                       os.fsencode(name)[:LO_NAME_SIZE - 1], b"", b"", 0, 0)


def _wait_for(path: Path, timeout: float) -> None:
    # devtmpfs creates nodes asynchronously after the driver registers them.
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise FileNotFoundError(errno.ENOENT, f"{path} did not appear in {timeout:g}s", str(path))
        time.sleep(0.005)


class Attached:
    """An attached loop device, held open: with autoclear, the last close frees it.

    Mount from ``device`` inside the ``with`` block; the mount then holds the
    device and the kernel detaches it when that mount goes.
    """

    def __init__(self, device: Path, fd: int):
        self.device = device
        self._fd: int | None = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Path:
        return self.device

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(backing: Path, dev: Path = Path("/dev"), timeout: float = 5.0) -> Attached:
    """Attach ``backing`` read-only with autoclear to a free loop device.

    Raises ``OSError`` naming the file or device that failed.
    """
    control = dev / "loop-control"
    _wait_for(control, timeout)
    file_fd = os.open(backing, os.O_RDONLY | os.O_CLOEXEC)
    try:
        config = struct.pack(_CONFIG, file_fd, 0, *struct.unpack(
            _INFO64, _info(LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR, os.fspath(backing))))
        for _ in range(10):  # another process may take the free device first (EBUSY)
            ctl = os.open(control, os.O_RDWR | os.O_CLOEXEC)
            try:
                number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            finally:
                os.close(ctl)
            device = dev / f"loop{number}"
            _wait_for(device, timeout)
            loop_fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.ioctl(loop_fd, LOOP_CONFIGURE, config)
            except OSError as e:
                os.close(loop_fd)
                if e.errno != errno.EBUSY:
                    raise OSError(e.errno, f"LOOP_CONFIGURE {backing}: {e.strerror}", str(device)) from e
                continue
            return Attached(device, loop_fd)
        raise OSError(errno.EBUSY, f"no free loop device for {backing}", str(control))
    finally:
        os.close(file_fd)  # the loop device holds its own reference to the file


def backing_file(device: Path, sys: Path = Path("/sys")) -> str | None:
    """The file behind a loop device (from sysfs), or None if it is not attached."""
    try:
        return (sys / "block" / device.name / "loop" / "backing_file").read_text().strip()
    except FileNotFoundError:
        return None
