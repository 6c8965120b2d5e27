"""Read a GUID partition table (pure parsing, no I/O beyond the bytes given).

Used to find our data partition even when the kernel has not (yet) made a
device for it: a kernel without GPT support, or a re-read that failed
because something held the disk open.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

SIGNATURE = b"EFI PART"
# Linux filesystem data, as sgdisk's type code 8300.
LINUX_FS_TYPE = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
# EFI System Partition, sgdisk's type code EF00.
ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")


class GptError(ValueError):
    pass


@dataclass(frozen=True)
class Partition:
    number: int  # 1-based slot in the entry array, as the kernel numbers partitions
    type: uuid.UUID
    unique: uuid.UUID
    first_lba: int
    last_lba: int
    name: str

    def start_bytes(self, sector: int) -> int:
        return self.first_lba * sector

    def size_bytes(self, sector: int) -> int:
        return (self.last_lba - self.first_lba + 1) * sector


def parse(header_sector: bytes, entries: bytes) -> list[Partition]:
    """Partitions in use, from LBA 1 and the entry array it points to."""
    h = header_sector
    if h[:8] != SIGNATURE:
        raise GptError("no GPT header (signature 'EFI PART' missing at LBA 1)")
    header_size = struct.unpack_from("<I", h, 12)[0]
    if not 92 <= header_size <= len(h):
        raise GptError(f"GPT header size {header_size} is invalid")
    crc = struct.unpack_from("<I", h, 16)[0]
    zeroed = h[:16] + b"\0\0\0\0" + h[20:header_size]
    if zlib.crc32(zeroed) != crc:
        raise GptError("GPT header checksum mismatch (corrupt header)")
    count, entry_size, entries_crc = struct.unpack_from("<III", h, 80)
    if entry_size < 128 or count > 4096:
        raise GptError(f"GPT entry array is implausible ({count} entries of {entry_size} bytes)")
    array = entries[: count * entry_size]
    if len(array) < count * entry_size:
        raise GptError("GPT entry array is truncated")
    if zlib.crc32(array) != entries_crc:
        raise GptError("GPT entry array checksum mismatch (corrupt table)")
    out = []
    for i in range(count):
        e = array[i * entry_size:(i + 1) * entry_size]
        type_guid = uuid.UUID(bytes_le=e[0:16])
        if type_guid.int == 0:
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        name = e[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        out.append(Partition(i + 1, type_guid, uuid.UUID(bytes_le=e[16:32]), first, last, name))
    return out


def entries_location(header_sector: bytes) -> tuple[int, int]:
    """(LBA of the entry array, its size in bytes), read from a header that has the signature."""
    if header_sector[:8] != SIGNATURE:
        raise GptError("no GPT header (signature 'EFI PART' missing at LBA 1)")
    lba = struct.unpack_from("<Q", header_sector, 72)[0]
    count, entry_size = struct.unpack_from("<II", header_sector, 80)
    return lba, count * entry_size


def read(device: str, sector: int) -> list[Partition]:
    """Read the primary table of a block device (or image file)."""
    with open(device, "rb") as f:
        f.seek(sector)
        header = f.read(sector)
        lba, size = entries_location(header)
        if size > 4096 * 512:
            raise GptError(f"GPT entry array of {size} bytes is implausible")
        f.seek(lba * sector)
        return parse(header, f.read(size))
