"""Real loop devices backed by sparse files, and a /var mountpoint that is always unmounted."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from talos_init import mounts, syscalls
from talos_init.disk.var import Layout


@dataclass
class Loop:
    devnode: str
    backing: Path


@contextlib.contextmanager
def loop_device(backing: Path, size: int = 1 << 30) -> Iterator[Loop]:
    """A loop device (partitions scanned) on a new sparse file; detached afterwards. 1 GiB: the
    install layout (EFI 512 MiB, STATE 100 MiB, EPHEMERAL) needs more than 676 MiB."""
    with open(backing, "wb") as f:
        f.truncate(size)
    dev = subprocess.run(["losetup", "-f", "--show", "-P", str(backing)],
                         check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield Loop(dev, backing)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


@pytest.fixture
def loopdisk(tmp_path):
    with loop_device(tmp_path / "disk.img") as loop:
        yield loop


@pytest.fixture
def layout(tmp_path):
    lay = Layout(var=tmp_path / "var", etc=tmp_path / "etc", report=tmp_path / "run/var.json",
                 device_wait=5.0)
    try:
        yield lay
    finally:
        while mounts.mounted_at(lay.var) is not None:
            syscalls.umount2(lay.var)
