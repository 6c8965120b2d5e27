"""/var on a real (loop) disk: partitioned when blank, kept when it holds our filesystem."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from talos_init import mounts, syscalls
from talos_init.disk import blockdev, gpt
from talos_init.disk.blockdev import DiskError
from talos_init.disk.install import setup


def _config(disk: str, wipe: bool = False) -> dict:
    return {"version": "v1alpha1", "machine": {"install": {"disk": disk, "wipe": wipe}}}


def _mount_options(target) -> set[str]:
    """Per-mount options plus the optional fields (shared:N) of the visible mount at target."""
    opts: set[str] = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(target):
                opts = set(fields[5].split(",")) | set(fields[6:fields.index("-")])
    return opts


def _partition_node(loopdisk) -> str:
    import pyudev

    from talos_init.disk.blockdev import find_by_path
    disk = find_by_path(pyudev.Context(), loopdisk.devnode)
    node = blockdev.partition_node(disk, 3)  # EPHEMERAL, after EFI and STATE
    assert node is not None
    return node


def test_blank_disk_is_partitioned_formatted_labelled_and_mounted(loopdisk, layout):
    """A blank disk gets the install layout; its EPHEMERAL holds ext4, mounted nodev,nosuid,noatime."""
    result = setup(_config(loopdisk.devnode), layout)
    assert result.mode == "disk" and result.action == "partition"
    parts = gpt.read(loopdisk.devnode, 512)
    assert [p.name for p in parts] == ["EFI", "STATE", "EPHEMERAL"]
    sig = blockdev.probe(result.partition)
    assert sig["TYPE"] == "ext4" and sig["LABEL"] == "EPHEMERAL"
    assert mounts.mounted_at(layout.var) == "ext4"
    options = _mount_options(layout.var)
    assert {"nodev", "nosuid", "noatime"} <= options
    assert any(o.startswith("shared:") for o in options)  # kubelet's mount propagation
    for rel in ("lib/containerd", "lib/kubelet", "log", "lib/kubernetes"):
        assert (layout.var / rel).is_dir()
    assert os.readlink(layout.etc / "kubernetes") == str(layout.var / "lib/kubernetes")
    assert json.loads(layout.report.read_text())["action"] == "partition"


def test_existing_filesystem_is_checked_and_kept(loopdisk, layout):
    """A disk already holding our filesystem is mounted unchanged: a file written before survives."""
    setup(_config(loopdisk.devnode), layout)
    (layout.var / "log/keep.txt").write_text("still here\n")
    syscalls.umount2(layout.var)
    result = setup(_config(loopdisk.devnode), layout)
    assert result.action == "check" and result.fsck == "clean"
    assert (layout.var / "log/keep.txt").read_text() == "still here\n"


def test_wipe_true_keeps_an_installed_var(loopdisk, layout):
    """wipe: true applies at installation only (as in Talos): an installed /var is kept."""
    setup(_config(loopdisk.devnode), layout)
    (layout.var / "log/old.txt").write_text("old\n")
    uuid_before = blockdev.probe(_partition_node(loopdisk))["UUID"]
    syscalls.umount2(layout.var)
    result = setup(_config(loopdisk.devnode, wipe=True), layout)
    assert result.action == "check"
    assert (layout.var / "log/old.txt").read_text() == "old\n"
    assert blockdev.probe(result.partition)["UUID"] == uuid_before


def test_wipe_true_erases_a_foreign_disk(loopdisk, layout):
    """wipe: true erases a disk holding someone else's table and installs /var on it."""
    subprocess.run(["sgdisk", "--new=1:0:+8M", "--change-name=1:data", loopdisk.devnode],
                   check=True, capture_output=True)
    result = setup(_config(loopdisk.devnode, wipe=True), layout)
    assert result.action == "wipe" and mounts.mounted_at(layout.var) == "ext4"
    assert [p.name for p in gpt.read(loopdisk.devnode, 512)] == ["EFI", "STATE", "EPHEMERAL"]


def _garble_superblock(partition: str) -> None:
    """Keep ext4's magic but give it an impossible block size (s_log_block_size)."""
    with open(partition, "r+b") as f:
        f.seek(1024 + 0x18)
        f.write((40).to_bytes(4, "little"))


def test_wipe_true_erases_an_installed_var_that_fails_its_check(loopdisk, layout):
    """An EPHEMERAL that e2fsck cannot repair is no usable /var: wipe: true reinstalls it."""
    result = setup(_config(loopdisk.devnode), layout)
    syscalls.umount2(layout.var)
    _garble_superblock(result.partition)
    again = setup(_config(loopdisk.devnode, wipe=True), layout)
    assert again.action == "wipe" and again.fsck == "new filesystem"
    assert mounts.mounted_at(layout.var) == "ext4"


def test_filesystem_is_clean_after_unmount(loopdisk, layout):
    """After writing and unmounting, e2fsck -fn finds the filesystem clean."""
    result = setup(_config(loopdisk.devnode), layout)
    (layout.var / "lib/containerd/blob").write_bytes(os.urandom(1 << 20))
    syscalls.umount2(layout.var)
    r = subprocess.run(["e2fsck", "-fn", result.partition], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_zeroed_superblock_is_refused_not_reformatted(loopdisk, layout):
    """A partition whose superblock was destroyed is refused with a clear error, never reformatted."""
    result = setup(_config(loopdisk.devnode), layout)
    (layout.var / "log/precious").write_text("data\n")
    syscalls.umount2(layout.var)
    with open(result.partition, "r+b") as f:
        f.seek(1024)
        f.write(bytes(1024))
    with pytest.raises(DiskError, match=r"no recognisable filesystem \(damaged ext4 superblock\?\)"):
        setup(_config(loopdisk.devnode), layout)
    assert mounts.mounted_at(layout.var) is None
    # Nothing was erased: a repair from the backup superblock brings the file back.
    r = subprocess.run(["e2fsck", "-fy", "-b", "8193", "-B", "1024", result.partition],
                       capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    setup(_config(loopdisk.devnode), layout)
    assert (layout.var / "log/precious").read_text() == "data\n"


def test_garbled_superblock_fails_the_check_and_is_not_mounted(loopdisk, layout):
    """A superblock with the ext4 magic but impossible geometry makes e2fsck fail: /var is not mounted."""
    result = setup(_config(loopdisk.devnode), layout)
    syscalls.umount2(layout.var)
    _garble_superblock(result.partition)
    with pytest.raises(DiskError, match=r"not mounting /var: .*e2fsck -p status"):
        setup(_config(loopdisk.devnode), layout)
    assert mounts.mounted_at(layout.var) is None


def test_foreign_gpt_is_refused(loopdisk, layout):
    """A GPT without our partition may be someone's data: refused, naming its partitions and the way out."""
    subprocess.run(["sgdisk", "--new=1:0:+8M", "--change-name=1:data", loopdisk.devnode],
                   check=True, capture_output=True)
    with pytest.raises(DiskError, match=r"no partition named EPHEMERAL \(partitions: 1:data\).*wipe: true"):
        setup(_config(loopdisk.devnode), layout)
    assert mounts.mounted_at(layout.var) is None
    assert [p.name for p in gpt.read(loopdisk.devnode, 512)] == ["data"]


def test_partition_name_is_rejected(loopdisk, layout):
    """Naming a partition instead of the whole disk is an error that says so."""
    setup(_config(loopdisk.devnode), layout)
    node = _partition_node(loopdisk)
    syscalls.umount2(layout.var)
    with pytest.raises(DiskError, match="name the whole disk"):
        setup(_config(node), layout)


def test_missing_disk_is_an_error(layout):
    """A named disk that does not exist fails the service instead of silently going ephemeral."""
    layout.device_wait = 0.2
    with pytest.raises(DiskError, match="/dev/vdzz: no such block device"):
        setup(_config("/dev/vdzz"), layout)


def test_no_disk_means_ephemeral_tmpfs(layout):
    """Without an install disk /var is tmpfs and the report says the node is ephemeral."""
    result = setup({"version": "v1alpha1", "machine": {}}, layout)
    assert result.mode == "ephemeral"
    assert mounts.mounted_at(layout.var) == "tmpfs"
    assert (layout.var / "lib/containerd").is_dir()
    assert json.loads(layout.report.read_text())["mode"] == "ephemeral"


def test_second_run_leaves_mounted_var_alone(loopdisk, layout):
    """A restarted var service finds /var mounted and does not touch the disk."""
    setup(_config(loopdisk.devnode), layout)
    result = setup(_config(loopdisk.devnode, wipe=True), layout)
    assert result.mode == "already-mounted"


def test_interrupted_first_boot_gets_its_filesystem(loopdisk, layout):
    """Our EPHEMERAL partition present but never formatted (power lost before mkfs) is formatted."""
    subprocess.run(["sgdisk", "--new=1:0:0", "--change-name=1:EPHEMERAL", loopdisk.devnode],
                   check=True, capture_output=True)
    result = setup(_config(loopdisk.devnode), layout)
    assert result.action == "format" and mounts.mounted_at(layout.var) == "ext4"
    assert blockdev.probe(result.partition)["LABEL"] == "EPHEMERAL"
