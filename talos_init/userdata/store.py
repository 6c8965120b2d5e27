"""Write the validated config for the services that need it: atomically, root only.

Readers either see the previous complete file or the new complete file, never a
half-written one: write a temporary file in the same directory, fsync it, rename it
over the target, then fsync the directory so the rename survives a crash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MODE = 0o600


def write_atomic(path: Path, data: bytes, mode: int = MODE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_config(
    original: bytes, effective: dict[str, Any], yaml_path: Path, json_path: Path
) -> None:
    """The original document(s) as fetched, then the effective JSON (its presence means: valid)."""
    write_atomic(yaml_path, original)
    text = json.dumps(effective, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    write_atomic(json_path, text.encode())
