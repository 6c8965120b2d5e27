"""What an ELF file needs at run time: the host's dynamic loader tells us (ldd).

Shared libraries are resolved, never listed by hand: ``ldd`` reports the full
closure (DT_NEEDED of DT_NEEDED, RUNPATH, the loader itself) exactly as the
loader will search for it in the image, since the image reuses Debian's layout.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ELF_MAGIC = b"\x7fELF"

_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(\S+)\s+\(0x[0-9a-f]+\)\s*$")


def is_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


def needed(path: Path) -> list[str]:
    """Absolute host paths (as the loader names them) of every library ``path`` loads."""
    proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False,
                          env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    text = proc.stdout + proc.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if proc.returncode != 0:
        raise RuntimeError(f"ldd {path} failed: {text.strip()}")
    libs = []
    for line in proc.stdout.splitlines():
        if "not found" in line:
            raise RuntimeError(f"{path}: library not found on this host: {line.strip()}")
        m = _LINE.match(line)
        if not m:
            continue
        soname, where = m.groups()
        if where.startswith("/"):
            libs.append(where)
        elif soname and soname.startswith("linux-vdso"):
            continue
    return libs
