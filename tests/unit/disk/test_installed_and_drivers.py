"""Finding EPHEMERAL by the kernel's PARTNAME and choosing storage modaliases, on a sysfs
tree laid out as the kernel does (this host's kernel does not parse GPT, QEMU's does)."""

from __future__ import annotations

import os
from pathlib import Path

from talos_init.disk import drivers, installed


def _partition(root: Path, disk: str, part: str, **uevent: str) -> None:
    d = root / "devices" / disk / part
    d.mkdir(parents=True)
    (d / "uevent").write_text("".join(f"{k}={v}\n" for k, v in
                                      {"DEVNAME": part, "DEVTYPE": "partition", **uevent}.items()))
    (root / "class").mkdir(exist_ok=True)
    os.symlink(d, root / "class" / part)


def test_partname_finds_the_partition_on_any_real_disk(tmp_path):
    """PARTNAME=EPHEMERAL counts on vda/nvme; another name, or a loop/ram disk, does not."""
    _partition(tmp_path, "vda", "vda1", PARTN="1", PARTNAME="EFI")
    _partition(tmp_path, "vda", "vda2", PARTN="2", PARTNAME="EPHEMERAL")
    _partition(tmp_path, "nvme0n1", "nvme0n1p1", PARTN="1", PARTNAME="data")
    _partition(tmp_path, "loop3", "loop3p1", PARTN="1", PARTNAME="EPHEMERAL")
    assert installed.find(tmp_path / "class", dev="/dev") == [
        installed.Candidate("/dev/vda2", "/dev/vda")]
    assert installed.find(tmp_path / "class", disks=("loop*",)) == [
        installed.Candidate("/dev/loop3p1", "/dev/loop3")]


def test_without_partname_the_ext4_label_decides(tmp_path):
    """A partition the kernel gives no name counts only if its ext4 superblock says EPHEMERAL."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name, label, magic in (("vdb1", b"EPHEMERAL", b"\x53\xef"), ("vdc1", b"other", b"\x53\xef"),
                               ("vdd1", b"EPHEMERAL", b"\0\0")):
        sb = bytearray(2048)
        sb[1024 + 0x38:1024 + 0x3A] = magic
        sb[1024 + 0x78:1024 + 0x78 + len(label)] = label
        (dev / name).write_bytes(bytes(sb))
        _partition(tmp_path, name[:3], name, PARTN="1")
    assert installed.find(tmp_path / "class", dev=str(dev)) == [
        installed.Candidate(f"{dev}/vdb1", f"{dev}/vdb")]


def test_storage_modaliases_only_and_only_unbound(tmp_path):
    """PCI mass storage and virtio block/SCSI devices without a driver; not NICs, not bound ones."""
    devices = {
        ("pci", "0000:00:04.0"): "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",  # virtio-blk
        ("pci", "0000:00:03.0"): "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",  # virtio-net
        ("pci", "0000:00:05.0"): "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",  # AHCI, bound
        ("virtio", "virtio1"): "virtio:d00000002v00001AF4",  # block
        ("virtio", "virtio0"): "virtio:d00000001v00001AF4",  # net
    }
    for (bus, name), alias in devices.items():
        d = tmp_path / bus / "devices" / name
        d.mkdir(parents=True)
        (d / "modalias").write_text(alias + "\n")
    (tmp_path / "pci/devices/0000:00:05.0/driver").mkdir()
    assert drivers.unbound_modaliases(tmp_path, "pci", drivers.pci_storage) == [
        devices[("pci", "0000:00:04.0")]]
    assert drivers.unbound_modaliases(tmp_path, "virtio", drivers.virtio_storage) == [
        devices[("virtio", "virtio1")]]
    assert drivers.unbound_modaliases(tmp_path, "scsi", drivers.pci_storage) == []
