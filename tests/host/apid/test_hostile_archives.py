"""Hostile image archives cost apid neither its memory nor containerd's disk (issue #22, 4 and 5)."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import pytest

HEADER_CLAIM = 256 << 20  # what the hostile header says it holds


def _header(name: bytes, typeflag: bytes, size: int) -> bytes:
    """One 512-byte ustar header block with a correct checksum."""
    block = bytearray(512)
    block[0:len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    block[124:136] = f"{size:011o}\0".encode()
    block[136:148] = b"00000000000\0"
    block[156:157] = typeflag
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    return bytes(block)


def _gzip_of(head: bytes, zeros: int, path: Path) -> Path:
    """``head`` then ``zeros`` zero bytes, gzip-compressed to ``path`` without holding them."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    with path.open("wb") as f:
        f.write(z.compress(head))
        chunk = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(z.compress(chunk))
        f.write(z.flush())
    return path


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("kind,typeflag", [("pax", tarfile.XHDTYPE), ("gnu", tarfile.GNUTYPE_LONGNAME)])
def test_huge_extended_header_is_refused_before_it_is_read(node, containerd, tmp_path, kind, typeflag):
    """A pax or GNU long-name header claiming 256 MiB is refused by its size; apid's peak memory
    grows by far less than the claim, and apid keeps serving."""
    upload = _gzip_of(_header(b"././@hostile", typeflag, HEADER_CLAIM), HEADER_CLAIM,
                      tmp_path / f"{kind}.tar.gz")
    before = _peak_rss(node.process.pid)
    admin = node.osctlconfig("admin", ["os:admin"])
    r = node.osctl(admin, "image", "import", str(upload), timeout=300)
    assert r.returncode == 1 and "bad request" in r.stderr, r.stderr
    assert f"header of {HEADER_CLAIM} bytes" in r.stderr, r.stderr
    grown = _peak_rss(node.process.pid) - before
    assert grown < HEADER_CLAIM // 4, f"apid's peak RSS grew by {grown >> 20} MiB"
    assert node.osctl(admin, "version").returncode == 0
