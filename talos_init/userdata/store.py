"""Write the validated config for the services that need it: atomically, root only.

Readers either see the previous complete file or the new complete file, never a
half-written one: write a temporary file in the same directory, fsync it, rename it
over the target, then fsync the directory so the rename survives a crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from talos_init import atomicfile

MODE = 0o600


def write_atomic(path: Path, data: bytes, mode: int = MODE) -> None:
    atomicfile.write_atomic(path, data, mode, dir_mode=0o700)


def write_config(
    original: bytes, effective: dict[str, Any], yaml_path: Path, json_path: Path
) -> None:
    """The original document(s) as fetched, then the effective JSON (its presence means: valid)."""
    write_atomic(yaml_path, original)
    text = json.dumps(effective, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    write_atomic(json_path, text.encode())


def write_source(path: Path, source: str) -> None:
    """Where the config about to be written came from (url, apply-config, store): the
    config-store service keeps a config from anywhere but the store itself."""
    write_atomic(path, (source + "\n").encode())
