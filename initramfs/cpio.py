"""A reproducible cpio "newc" writer: the format the kernel unpacks as initramfs.

Written by hand rather than with cpio(1) so that device nodes need no root,
and so that owners, inode numbers and mtimes are fixed: same tree, same bytes.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Member:
    name: str  # path inside the archive, without a leading "/"
    mode: int  # full st_mode: type bits and permissions
    data: bytes = b""  # file content, or the target of a symlink
    rdev: tuple[int, int] = (0, 0)  # (major, minor) for device nodes


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, member: Member, size: int, mtime: int) -> bytes:
    name = member.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(member.mode) else 1
    fields = (ino, member.mode, 0, 0, nlink, mtime, size, 0, 0,
              member.rdev[0], member.rdev[1], len(name), 0)
    head = MAGIC + b"".join(b"%08X" % f for f in fields)
    return head + name + _pad(len(head) + len(name))


def write(out: BinaryIO, members: Iterable[Member], mtime: int = 0) -> int:
    """Write members in the order given, then the trailer; return bytes written."""
    written = 0
    ino = 1
    for member in members:
        if member.name.startswith("/") or not member.name:
            raise ValueError(f"cpio member name must be relative: {member.name!r}")
        block = _header(ino, member, len(member.data), mtime) + member.data + _pad(len(member.data))
        out.write(block)
        written += len(block)
        ino += 1
    tail = _header(0, Member(TRAILER, 0), 0, 0)
    out.write(tail)
    written += len(tail)
    # The kernel does not need it, but cpio(1) and most tools expect 512-byte blocks.
    pad = b"\0" * (-written % 512)
    out.write(pad)
    return written + len(pad)


def read(data: bytes) -> list[Member]:
    """Parse a newc archive (used by tests and the image walker)."""
    return read_one(data)[0]


def read_one(data: bytes) -> tuple[list[Member], int]:
    """Parse one archive from the start of ``data``; return its members and the bytes it used."""
    members = []
    pos = 0
    while True:
        if data[pos:pos + 6] != MAGIC:
            raise ValueError(f"bad cpio magic at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        start = pos + 110
        name = data[start:start + namesize - 1].decode()
        pos = start + namesize
        pos += -pos % 4
        if name == TRAILER:
            return members, pos
        body = data[pos:pos + size]
        pos += size
        pos += -pos % 4
        members.append(Member(name, mode, body, (rmaj, rmin)))
