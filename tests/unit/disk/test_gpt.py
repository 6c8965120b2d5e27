"""The GPT reader finds named partitions and rejects corrupt tables."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest

from talos_init.disk.gpt import LINUX_FS_TYPE, GptError, parse


def _table(names: list[str], count: int = 128) -> tuple[bytes, bytes]:
    entries = bytearray(count * 128)
    for i, name in enumerate(names):
        e = bytearray(128)
        e[0:16] = LINUX_FS_TYPE.bytes_le
        e[16:32] = uuid.uuid4().bytes_le
        struct.pack_into("<QQ", e, 32, 2048 * (i + 1), 2048 * (i + 2) - 1)
        e[56:56 + 2 * len(name)] = name.encode("utf-16-le")
        entries[i * 128:(i + 1) * 128] = e
    h = bytearray(512)
    h[0:8] = b"EFI PART"
    struct.pack_into("<IIII", h, 8, 0x10000, 92, 0, 0)
    struct.pack_into("<Q", h, 72, 2)
    struct.pack_into("<III", h, 80, count, 128, zlib.crc32(entries))
    struct.pack_into("<I", h, 16, zlib.crc32(bytes(h[:92])))
    return bytes(h), bytes(entries)


def test_named_partitions_are_listed():
    """Partitions in use come back with their 1-based number, bounds and name."""
    parts = parse(*_table(["EFI", "EPHEMERAL"]))
    assert [(p.number, p.name) for p in parts] == [(1, "EFI"), (2, "EPHEMERAL")]
    assert parts[1].first_lba == 4096 and parts[1].size_bytes(512) == 2048 * 512


def test_corrupt_entries_are_rejected():
    """A flipped byte in the entry array fails the checksum."""
    header, entries = _table(["EPHEMERAL"])
    bad = bytearray(entries)
    bad[60] ^= 1
    with pytest.raises(GptError, match="entry array checksum"):
        parse(header, bytes(bad))


def test_missing_signature_is_rejected():
    """A sector without 'EFI PART' is not a GPT."""
    with pytest.raises(GptError, match="signature"):
        parse(bytes(512), bytes(128 * 128))
