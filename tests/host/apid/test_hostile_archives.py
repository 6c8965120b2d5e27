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


BLOB = "blobs/sha256/" + "ab" * 32


def _content_left(containerd) -> tuple[list, list]:
    """Committed blobs and open ingests in k8s.io."""
    from talos_init.containerd.grpc import decode

    blobs = decode(containerd.call("/containerd.services.content.v1.Content/List", b"", "k8s.io"))
    ingests = decode(containerd.call("/containerd.services.content.v1.Content/ListStatuses", b"",
                                     "k8s.io"))
    return blobs.get(1, []), ingests.get(1, [])


def test_zeros_behind_gzip_are_refused_by_their_ratio_before_they_fill_the_store(
        node, containerd, tmp_path):
    """512 MiB of zeros in a ~0.5 MB upload: refused once the tar outgrows 50x its wire bytes."""
    upload = _gzip_of(_header(BLOB.encode(), tarfile.REGTYPE, 512 << 20), 512 << 20,
                      tmp_path / "zeros.tar.gz")
    r = node.osctl(node.osctlconfig("admin", ["os:admin"]), "image", "import", str(upload),
                   timeout=300)
    assert r.returncode == 1 and "bad request" in r.stderr, r.stderr
    assert "expands to over 50 times its compressed size" in r.stderr, r.stderr
    assert _content_left(containerd) == ([], [])


def test_uncompressed_cap_refuses_a_member_by_its_declared_size(node, containerd, tmp_path):
    """A member declaring more than --max-upload-uncompressed is refused before a byte is written."""
    from tests.host.apid.conftest import ROOT, start_apid
    import subprocess
    import sys

    second = tmp_path / "second"
    second.mkdir()
    proc, host, port = start_apid(second, node.tmp / "config.json", node.tmp / "run" / "init.sock",
                                  "--containerd-socket", str(node.containerd_dir / "containerd.sock"),
                                  "--max-upload-uncompressed", str(8 << 20))
    try:
        upload = _gzip_of(_header(BLOB.encode(), tarfile.REGTYPE, 16 << 20), 16 << 20,
                          tmp_path / "big.tar.gz")
        r = subprocess.run([sys.executable, "-m", "talos_init.osctl", "--osctlconfig",
                            str(node.osctlconfig("admin", ["os:admin"])), "-e", f"{host}:{port}",
                            "image", "import", str(upload)],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 1, r.stdout
        assert f"unpacks to more than {8 << 20} bytes" in r.stderr, r.stderr
        assert _content_left(containerd) == ([], [])
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def small_var(node):
    """containerd's root on a 48 MiB tmpfs (mounted before the containerd fixture starts it)."""
    import subprocess

    root = node.containerd_dir / "root"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(root)], check=True)
    yield root
    subprocess.run(["umount", "-l", str(root)], check=False)


def test_blob_larger_than_the_free_space_is_refused_before_writing(node, small_var, containerd,
                                                                  tmp_path):
    """A 64 MiB blob for a 48 MiB /var is refused by its declared size, with the free space named."""
    from tests.ociimage import tar_bytes

    upload = tmp_path / "fat.tar"
    upload.write_bytes(tar_bytes({BLOB: bytes(range(256)) * (256 << 10)}))
    r = node.osctl(node.osctlconfig("admin", ["os:admin"]), "image", "import", str(upload),
                   timeout=300)
    assert r.returncode == 1 and "not enough space" in r.stderr, r.stderr
    assert f"{64 << 20} bytes" in r.stderr, r.stderr
    assert _content_left(containerd) == ([], [])
