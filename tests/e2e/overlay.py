"""Test-only additions to a built image, as a second cpio appended to it.

The kernel unpacks concatenated initramfs archives in order, later files
replacing earlier ones, so a test can add a probe without rebuilding or
touching the image under test.
"""

from __future__ import annotations

import io
import stat
import subprocess
from pathlib import Path

from initramfs import cpio


def with_files(base: Path, out: Path, files: dict[str, tuple[bytes, int]]) -> Path:
    """Write ``base`` + a cpio of ``files`` ({image path: (content, mode)}) to ``out``."""
    members = []
    dirs = set()
    for path in sorted(files):
        parent = Path(path).parent
        while str(parent) not in ("/", "."):
            dirs.add(str(parent).lstrip("/"))
            parent = parent.parent
    members += [cpio.Member(d, stat.S_IFDIR | 0o755) for d in sorted(dirs)]
    members += [cpio.Member(p.lstrip("/"), stat.S_IFREG | mode, data)
                for p, (data, mode) in sorted(files.items())]
    buf = io.BytesIO()
    cpio.write(buf, members)
    # Compressed like the base: the kernel's zstd reader runs on to the end of the buffer,
    # so the overlay must be more zstd frames, which decode as one continued stream.
    frame = subprocess.run(["zstd", "-3", "-q", "-c"], input=buf.getvalue(), capture_output=True,
                           check=True).stdout
    out.write_bytes(base.read_bytes() + frame)
    return out
