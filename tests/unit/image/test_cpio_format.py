"""The newc writer: what the kernel's initramfs unpacker reads."""

import io
import stat

from initramfs import cpio


def _archive(members, mtime=0):
    buf = io.BytesIO()
    cpio.write(buf, members, mtime=mtime)
    return buf.getvalue()


def test_round_trip_keeps_names_modes_content_and_device_numbers():
    """Files, directories, symlinks and char devices read back exactly as written."""
    members = [
        cpio.Member("dev", stat.S_IFDIR | 0o755),
        cpio.Member("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        cpio.Member("init", stat.S_IFREG | 0o755, b"#!/usr/bin/python3.11 -I\n"),
        cpio.Member("sbin", stat.S_IFLNK | 0o777, b"usr/sbin"),
        cpio.Member("odd", stat.S_IFREG | 0o644, b"x" * 5),
    ]
    assert cpio.read(_archive(members)) == members


def test_headers_and_data_are_four_byte_aligned_and_archive_ends_on_512():
    """Every header starts on a 4-byte boundary and the archive is padded to 512 bytes."""
    data = _archive([cpio.Member("a", stat.S_IFREG | 0o644, b"abc"),
                     cpio.Member("bb", stat.S_IFREG | 0o644, b"defgh")])
    assert len(data) % 512 == 0
    starts = [i for i in range(0, len(data), 4) if data[i:i + 6] == cpio.MAGIC]
    assert len(starts) == 3  # two members and the trailer
    assert all(s % 4 == 0 for s in starts)


def test_owner_and_mtime_are_fixed():
    """uid, gid and mtime fields are the fixed values whatever the host files were."""
    data = _archive([cpio.Member("f", stat.S_IFREG | 0o644, b"1")], mtime=1234)
    fields = [int(data[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
    assert fields[2:4] == [0, 0]
    assert fields[5] == 1234


def test_relative_names_only():
    """An absolute member name is refused (the kernel would unpack it relative anyway)."""
    try:
        _archive([cpio.Member("/etc/passwd", stat.S_IFREG | 0o644)])
    except ValueError as e:
        assert "/etc/passwd" in str(e)
    else:
        raise AssertionError("absolute name accepted")
