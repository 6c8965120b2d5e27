"""Run ``talos_init.boot.slots`` plans on an ESP, and read what the firmware tells us.

The thin I/O shell around the pure core: a step at a time, each made durable
(file fsync after a write, directory fsync after a rename or delete) before
the next begins, so a power cut between any two steps leaves what the plan's
prefix promises. ``Fs`` is the file system seen: a mounted vfat directory on the
node (``DirFs``), an mtools-driven image in host tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol
from collections.abc import Callable

from talos_init.boot import esp
from talos_init.boot.slots import Delete, Rename, Step, Write

# systemd's boot loader interface vendor GUID (LoaderEntrySelected, LoaderDevicePartUUID...).
LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
EFIVARS = Path("/sys/firmware/efi/efivars")


class Fs(Protocol):
    def list(self, directory: str) -> list[str]: ...
    def write(self, path: str, data_from: Path | bytes) -> None: ...
    def rename(self, old: str, new: str) -> None: ...
    def delete(self, path: str) -> None: ...
    def mkdir(self, path: str) -> None: ...


class DirFs:
    """A mounted file system; every change is fsynced before the call returns."""

    def __init__(self, root: Path):
        self.root = root

    def _sync_dir(self, rel: str) -> None:
        fd = os.open(self.root / rel, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def list(self, directory: str) -> list[str]:
        try:
            return sorted(p.name for p in (self.root / directory).iterdir())
        except FileNotFoundError:
            return []

    def write(self, path: str, data_from: Path | bytes) -> None:
        with open(self.root / path, "wb") as out:
            if isinstance(data_from, bytes):
                out.write(data_from)
            else:
                with open(data_from, "rb") as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())

    def rename(self, old: str, new: str) -> None:
        os.replace(self.root / old, self.root / new)
        self._sync_dir(os.path.dirname(new) or ".")

    def delete(self, path: str) -> None:
        (self.root / path).unlink(missing_ok=True)
        self._sync_dir(os.path.dirname(path) or ".")

    def mkdir(self, path: str) -> None:
        (self.root / path).mkdir(exist_ok=True)
        self._sync_dir(os.path.dirname(path) or ".")


def run(fs: Fs, steps: list[Step], sources: dict[str, Path | bytes],
        after_step: Callable[[int, Step], None] | None = None) -> None:
    """Carry out ``steps`` in order. ``sources`` names what a Write's source string means."""
    for d in esp.DIRECTORIES:
        if d.rsplit("/", 1)[-1] not in fs.list(os.path.dirname(d)):
            fs.mkdir(d)
    for i, step in enumerate(steps):
        if isinstance(step, Write):
            data = step.source if isinstance(step.source, bytes) else sources[step.source]
            fs.write(step.path, data)
        elif isinstance(step, Rename):
            fs.rename(step.old, step.new)
        elif isinstance(step, Delete):
            fs.delete(step.path)
        else:
            raise TypeError(f"unknown step {step!r}")
        if after_step is not None:
            after_step(i, step)


def linux_names(fs: Fs) -> list[str]:
    return fs.list(esp.LINUX_DIR)


def read_efivar(name: str, efivars: Path = EFIVARS) -> str | None:
    """A systemd loader variable (UTF-16 string after 4 attribute bytes), None when unset."""
    try:
        raw = (efivars / f"{name}-{LOADER_GUID}").read_bytes()
    except OSError:
        return None
    return raw[4:].decode("utf-16-le", errors="replace").rstrip("\0") or None


def selected_entry(efivars: Path = EFIVARS) -> str | None:
    """The entry systemd-boot started this boot with (its name at that moment)."""
    return read_efivar("LoaderEntrySelected", efivars)


def boot_partition_uuid(efivars: Path = EFIVARS) -> str | None:
    """The GPT unique GUID of the ESP systemd-boot was loaded from (lower case)."""
    value = read_efivar("LoaderDevicePartUUID", efivars)
    return value.lower() if value else None
