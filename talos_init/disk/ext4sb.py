"""Read an ext2/3/4 superblock: its label, and whether ``e2fsck -p`` would check the filesystem.

An installed /var is mounted at every boot. ``e2fsck -p`` on a clean
filesystem only reads the superblock and says "clean"; running it costs a
process start (a big one under emulation). ``fsck_reason`` applies the same
tests e2fsck's preen mode makes before it decides to skip (check_if_skip in
e2fsprogs): errors recorded, not cleanly unmounted, mounted too often or too
long since the last check; plus a journal awaiting replay or orphan inodes,
which e2fsck handles before that test. The kernel checks the superblock and
group descriptor checksums itself when it mounts; the caller runs e2fsck when
that mount fails.
"""

from __future__ import annotations

import struct

OFFSET = 1024  # the primary superblock, from the start of the partition
SIZE = 1024
MAGIC = 0xEF53

STATE_VALID = 0x1  # cleanly unmounted
STATE_ERROR = 0x2  # errors detected
INCOMPAT_RECOVER = 0x4  # the journal needs replaying


class Superblock:
    """The fields of the superblock this module needs (little endian, ext4 layout)."""

    def __init__(self, raw: bytes):
        if len(raw) < SIZE:
            raise ValueError(f"superblock truncated: {len(raw)} of {SIZE} bytes")
        (self.mnt_count, self.max_mnt_count, self.magic, self.state) = struct.unpack_from(
            "<HhHH", raw, 0x34)
        self.lastcheck, self.checkinterval = struct.unpack_from("<II", raw, 0x40)
        (self.feature_incompat,) = struct.unpack_from("<I", raw, 0x60)
        self.label = raw[0x78:0x88].split(b"\0", 1)[0].decode("utf-8", "replace")
        (self.last_orphan,) = struct.unpack_from("<I", raw, 0xE8)
        (self.error_count,) = struct.unpack_from("<I", raw, 0x194)


def read(devnode: str) -> Superblock | None:
    """The superblock on ``devnode``; None when it holds no ext2/3/4 filesystem."""
    try:
        with open(devnode, "rb") as f:
            f.seek(OFFSET)
            raw = f.read(SIZE)
    except OSError:
        return None
    if len(raw) < SIZE or struct.unpack_from("<H", raw, 0x38)[0] != MAGIC:
        return None
    return Superblock(raw)


def fsck_reason(sb: Superblock, now: float) -> str | None:
    """Why ``e2fsck -p`` would check this filesystem; None when it would call it clean."""
    if sb.state & STATE_ERROR or sb.error_count:
        return "errors are recorded in the superblock"
    if not sb.state & STATE_VALID:
        return "not cleanly unmounted"
    if sb.feature_incompat & INCOMPAT_RECOVER:
        return "the journal needs replaying"
    if sb.last_orphan:
        return "orphan inodes are left to clean up"
    if sb.max_mnt_count > 0 and sb.mnt_count >= sb.max_mnt_count:
        return f"mounted {sb.mnt_count} times without a check"
    if sb.checkinterval:
        if now < sb.lastcheck:
            return "last checked in the future"
        if now - sb.lastcheck >= sb.checkinterval:
            return "the check interval has passed"
    return None
