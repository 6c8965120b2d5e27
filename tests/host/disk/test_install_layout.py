"""The install layout on real loop disks: EFI (FAT32), STATE (ext4), EPHEMERAL (ext4, /var),
each found by its GPT name; a disk of the older layout (EPHEMERAL only) keeps booting."""

from __future__ import annotations

import os
import subprocess

import pytest

from talos_init import mounts, syscalls
from talos_init.disk import DiskError, gpt, installed, state
from talos_init.disk.install import setup
from talos_init.disk.var import setup_at_boot
from tests.host.disk.conftest import loop_device

MIB = 1 << 20


def _config(disk: str) -> dict:
    return {"version": "v1alpha1", "machine": {"install": {"disk": disk}}}


def _blkid(node: str) -> dict[str, str]:
    out = subprocess.run(["blkid", "-p", "-o", "export", node], capture_output=True,
                         text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _reboot(layout) -> None:
    syscalls.umount2(layout.var)
    layout.report.unlink()


def _boot_layout(layout, loop):
    layout.disks = (os.path.basename(loop.devnode),)
    layout.load_drivers = False
    layout.config_poll = 0.05
    return layout


def test_blank_disk_gets_efi_state_ephemeral_in_order(loopdisk, layout):
    result = setup(_config(loopdisk.devnode), layout)
    parts = gpt.read(loopdisk.devnode, 512)
    assert [(p.number, p.name) for p in parts] == [(1, "EFI"), (2, "STATE"), (3, "EPHEMERAL")]
    efi, st, eph = parts
    assert efi.type == gpt.ESP_TYPE and st.type == eph.type == gpt.LINUX_FS_TYPE
    assert efi.size_bytes(512) == 512 * MIB and st.size_bytes(512) == 100 * MIB
    assert eph.last_lba > st.last_lba > efi.last_lba  # EPHEMERAL takes the rest
    assert eph.size_bytes(512) > 300 * MIB
    nodes = [f"{loopdisk.devnode}p{n}" for n in (1, 2, 3)]
    assert {k: _blkid(nodes[0]).get(k) for k in ("TYPE", "VERSION", "LABEL")} == \
        {"TYPE": "vfat", "VERSION": "FAT32", "LABEL": "EFI"}
    assert (_blkid(nodes[1])["TYPE"], _blkid(nodes[1])["LABEL"]) == ("ext4", "STATE")
    assert (_blkid(nodes[2])["TYPE"], _blkid(nodes[2])["LABEL"]) == ("ext4", "EPHEMERAL")
    assert result.partition == nodes[2] and mounts.mounted_at(layout.var) == "ext4"


def test_every_partition_is_found_by_name_after_a_reboot(loopdisk, layout, tmp_path):
    setup(_config(loopdisk.devnode), layout)
    _reboot(layout)
    name = (os.path.basename(loopdisk.devnode),)
    found = state.find(disks=name)
    assert found == installed.Candidate(f"{loopdisk.devnode}p2", loopdisk.devnode)
    result = setup_at_boot(_boot_layout(layout, loopdisk), lambda: None)
    assert (result.partition, result.found_by) == (f"{loopdisk.devnode}p3", "label")
    where = tmp_path / "state"
    try:
        assert state.ensure_mounted(where, disks=name) == where
        assert state.ensure_mounted(where, disks=name) == where  # twice: no error, one mount
        assert mounts.mounted_at(where) == "ext4"
        with open("/proc/self/mountinfo") as f:
            assert sum(li.split()[4] == str(where) for li in f) == 1
        (where / "probe").write_text("kept")
    finally:
        while mounts.mounted_at(where) is not None:
            syscalls.umount2(where)


def test_older_layout_with_ephemeral_only_keeps_booting(loopdisk, layout, tmp_path):
    """A disk installed before STATE existed: /var mounts as before, and there is no STATE."""
    subprocess.run(["sgdisk", "--clear", "--new=1:0:0", "--typecode=1:8300",
                    "--change-name=1:EPHEMERAL", loopdisk.devnode], check=True,
                   capture_output=True)
    subprocess.run(["partprobe", loopdisk.devnode], capture_output=True)
    part = f"{loopdisk.devnode}p1"
    subprocess.run(["mkfs.ext4", "-F", "-q", "-L", "EPHEMERAL", part], check=True)
    result = setup_at_boot(_boot_layout(layout, loopdisk), lambda: None)
    assert (result.partition, result.found_by) == (part, "label")
    name = (os.path.basename(loopdisk.devnode),)
    assert state.find(disks=name) is None
    assert state.ensure_mounted(tmp_path / "state", disks=name) is None
    _reboot(layout)
    # With the config too (install.disk names it): checked and mounted, never repartitioned.
    result = setup(_config(loopdisk.devnode), layout)
    assert result.action == "check"
    assert [p.name for p in gpt.read(loopdisk.devnode, 512)] == ["EPHEMERAL"]


def test_first_boot_cut_before_ephemeral_was_formatted_formats_the_whole_layout(loopdisk, layout):
    """Partitioned, EPHEMERAL still blank (power cut): the next boot formats every partition."""
    subprocess.run(["sgdisk", "--clear", "--new=1:0:+512M", "--typecode=1:ef00",
                    "--change-name=1:EFI", "--new=2:0:+100M", "--change-name=2:STATE",
                    "--new=3:0:0", "--change-name=3:EPHEMERAL", loopdisk.devnode], check=True,
                   capture_output=True)
    result = setup(_config(loopdisk.devnode), layout)
    assert result.action == "format"
    assert _blkid(f"{loopdisk.devnode}p1").get("LABEL") == "EFI"
    assert _blkid(f"{loopdisk.devnode}p2").get("LABEL") == "STATE"
    assert mounts.mounted_at(layout.var) == "ext4"


def test_disk_too_small_for_the_layout_is_refused_with_the_sizes(tmp_path, layout):
    with loop_device(tmp_path / "small.img", 256 * MIB) as small:
        with pytest.raises(DiskError, match=r"is 256 MiB; the install layout .* needs at least"):
            setup(_config(small.devnode), layout)
        assert mounts.mounted_at(layout.var) is None
