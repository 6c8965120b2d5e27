"""diskSelector picks a disk from udev's view of this machine (read-only: nothing is written)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyudev

from talos_init.disk.blockdev import DiskError, find_by_selector


def _virtio_disks() -> list[str]:
    return sorted(p.name for p in Path("/sys/block").iterdir()
                  if (p / "device/modalias").exists()
                  and (p / "device/modalias").read_text().startswith("virtio:"))


def test_first_virtio_disk_is_chosen_by_modalias():
    """modalias: virtio:* selects the first virtio disk, as on a QEMU node."""
    virtio = _virtio_disks()
    if not virtio:
        pytest.fail("this host test needs a virtio disk (the CI VM has /dev/vda)")
    disk = find_by_selector(pyudev.Context(), {"modalias": "virtio:*"})
    assert disk is not None and disk.sys_name == virtio[0] and disk.size > 0


def test_no_match_gives_none():
    """A selector nothing matches selects no disk."""
    assert find_by_selector(pyudev.Context(), {"model": "no-such-model-*"}) is None


def test_unsupported_selector_field_is_named():
    """A selector field we do not implement is an error naming it."""
    with pytest.raises(DiskError, match=r"diskSelector.uuid: not supported"):
        find_by_selector(pyudev.Context(), {"uuid": "x"})


def test_libudev_is_found_without_an_ldconfig_cache(monkeypatch):
    """In an initramfs ctypes.util.find_library finds nothing; libudev.so.1 is still loaded."""
    from pyudev._ctypeslib import utils

    from talos_init.disk.blockdev import udev_context

    monkeypatch.setattr(utils, "find_library", lambda name: None)
    with pytest.raises(ImportError):
        pyudev.Context()
    context = udev_context()
    assert any(True for _ in context.list_devices(subsystem="block"))
