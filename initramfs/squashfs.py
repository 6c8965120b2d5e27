"""The payload image: a reproducible squashfs made with mksquashfs, and read back for checks.

Same tree, same bytes: fixed times, every file root-owned, no xattrs, and
mksquashfs' reproducible mode (deterministic fragment order whatever the
number of threads). Reading back (``members``) uses unsquashfs, so a check of
a built image sees exactly what the kernel will mount.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

from initramfs import cpio


def build(src: Path, image: Path, options: list[str], mtime: int = 0) -> None:
    """Write ``src`` (a directory) as the squashfs ``image``, compressed as ``options`` say."""
    image.unlink(missing_ok=True)
    proc = subprocess.run(["mksquashfs", str(src), str(image), *options, "-noappend", "-reproducible",
                           "-all-root", "-no-xattrs", "-mkfs-time", str(mtime), "-all-time", str(mtime),
                           "-root-mode", "0755", "-quiet", "-no-progress"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"mksquashfs {src} failed ({proc.returncode}): {proc.stderr.strip()}")


def members(data: bytes, prefix: str) -> list[cpio.Member]:
    """The files of a squashfs image as archive members named ``prefix/...`` (sorted)."""
    with tempfile.TemporaryDirectory(prefix="unsquashfs-") as tmp:
        image, root = Path(tmp, "image"), Path(tmp, "root")
        image.write_bytes(data)
        proc = subprocess.run(["unsquashfs", "-no-progress", "-quiet", "-no-xattrs", "-d", str(root),
                               str(image)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"unsquashfs failed ({proc.returncode}): {proc.stderr.strip()}")
        out = []
        for path in sorted(root.rglob("*")):
            st = path.lstat()
            name = f"{prefix.strip('/')}/{path.relative_to(root)}"
            if stat.S_ISLNK(st.st_mode):
                out.append(cpio.Member(name, st.st_mode, os.readlink(path).encode()))
            elif stat.S_ISREG(st.st_mode):
                out.append(cpio.Member(name, st.st_mode, path.read_bytes()))
            else:
                out.append(cpio.Member(name, st.st_mode))
        return out


def expand(archive: list[cpio.Member], image: str, mountpoint: str) -> list[cpio.Member]:
    """An archive's members plus the content of its squashfs ``image`` as mounted at ``mountpoint``."""
    # The kernel unpacks archives in order: a later member of the same name replaces the earlier.
    found = [m for m in archive if m.name == image.lstrip("/")][-1:]
    return archive + [x for m in found for x in members(m.data, mountpoint)]
