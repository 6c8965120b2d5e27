"""Read the sections of a PE image (a unified kernel image), and fix its header's time.

Pure parsing of bytes given: the node reads a slot's ``.osrel`` (its version) and
checks an uploaded image has ``.linux`` and ``.initrd`` before writing it to a slot.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class PeError(ValueError):
    pass


@dataclass(frozen=True)
class Section:
    name: str
    vma: int  # relative virtual address
    virtual_size: int
    offset: int  # in the file
    size: int  # raw size in the file (may be padded to the file alignment)


def _header(head: bytes) -> tuple[int, int, int]:
    """(COFF header offset, number of sections, optional header size)."""
    if len(head) < 64 or head[:2] != b"MZ":
        raise PeError("not a PE image: no 'MZ' at its start")
    pe = struct.unpack_from("<I", head, 0x3C)[0]
    if pe + 24 > len(head) or head[pe:pe + 4] != b"PE\0\0":
        raise PeError(f"not a PE image: no 'PE' signature at offset {pe:#x}")
    nsections, opt_size = struct.unpack_from("<H12xH", head, pe + 6)
    return pe + 4, nsections, opt_size


def sections(head: bytes) -> dict[str, Section]:
    """The section table, from the first bytes of the file (4 KiB is plenty for ours)."""
    coff, n, opt_size = _header(head)
    table = coff + 20 + opt_size
    if table + 40 * n > len(head):
        raise PeError("PE section table runs past the bytes read")
    out = {}
    for i in range(n):
        raw = head[table + 40 * i:table + 40 * (i + 1)]
        name = raw[:8].rstrip(b"\0").decode("ascii", "replace")
        vsize, vma, size, offset = struct.unpack_from("<IIII", raw, 8)
        out[name] = Section(name, vma, vsize, offset, size)
    return out


def read_section(path, name: str, limit: int = 1 << 16) -> bytes | None:
    """The content of section ``name`` of the PE file at ``path`` (at most ``limit`` bytes)."""
    with open(path, "rb") as f:
        head = f.read(8192)
        s = sections(head).get(name)
        if s is None:
            return None
        f.seek(s.offset)
        return f.read(min(s.virtual_size or s.size, s.size, limit))


def set_timestamp(data: bytearray, timestamp: int) -> None:
    """Set the COFF TimeDateStamp and recompute the optional header's checksum."""
    coff, _, _ = _header(bytes(data[:8192]))
    struct.pack_into("<I", data, coff + 4, timestamp)
    opt = coff + 20
    struct.pack_into("<I", data, opt + 64, 0)
    struct.pack_into("<I", data, opt + 64, checksum(data, opt + 64))


def checksum(data: bytes | bytearray, checksum_offset: int) -> int:
    """The PE image checksum (16-bit one's complement sum of the file, plus its length)."""
    n = len(data) // 2 * 2
    words = memoryview(bytes(data[:n])).cast("H")
    total = sum(words) - sum(struct.unpack_from("<HH", data, checksum_offset))
    if len(data) % 2:
        total += data[-1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF
