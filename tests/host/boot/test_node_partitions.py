"""The node finds ESPs by GPT name and GUID from sysfs and the table itself (a built disk)."""

from __future__ import annotations

import uuid
from pathlib import Path

from initramfs import bootimg
from talos_init.boot import node
from talos_init.osctl.bootverbs import version_rows


def fake_sysfs(root: Path, disk: str, parts: dict[int, str | None]) -> Path:
    """/sys/class/block/<disk>N entries (symlinks into the disk's directory, as sysfs has)."""
    block = root / "devices" / disk
    cls = root / "class" / "block"
    cls.mkdir(parents=True)
    (block).mkdir(parents=True)
    (block / "uevent").write_text(f"DEVTYPE=disk\nDEVNAME={disk}\n")
    (cls / disk).symlink_to(block)
    for n, name in parts.items():
        d = block / f"{disk}{n}"
        d.mkdir()
        lines = f"DEVTYPE=partition\nDEVNAME={disk}{n}\nPARTN={n}\n"
        if name is not None:
            lines += f"PARTNAME={name}\n"
        (d / "uevent").write_text(lines)
        (cls / f"{disk}{n}").symlink_to(d)
    return cls


def test_partitions_carry_gpt_names_and_guids_even_without_partname(tmp_path):
    """PARTNAME missing (a BLKPG-made node): the name comes from the table; the GUID always."""
    dev = tmp_path / "dev"
    dev.mkdir()
    esp_img = tmp_path / "esp.img"
    esp_img.write_bytes(bytes(40 << 20))
    bootimg.raw_disk(esp_img, dev / "vda")
    cls = fake_sysfs(tmp_path / "sys", "vda", {1: None})
    parts = node.partitions(cls, dev=str(dev))
    assert parts == [node.Part(f"{dev}/vda1", f"{dev}/vda", 1, "EFI",
                               uuid.UUID(bootimg.ESP_GUID), node.ESP_TYPE)]
    assert node.install_esp(parts, f"{dev}/vda") == parts[0]
    assert node.install_esp(parts, f"{dev}/vdb") is None


def test_version_rows_show_running_slot_each_slot_and_a_rollback():
    """osctl version's lines for the boot slots, and a rollback's reason."""
    rows = version_rows({"running": "B", "rolled_back": "slot A (x) ran out of boot tries",
                         "slots": {"B": {"version": "2", "state": "good", "entry": "talos-2-b.efi"},
                                   "A": {"version": "3", "state": "bad", "entry": "x"}}})
    assert rows == [{"k": "boot slot", "v": "B"}, {"k": "slot A", "v": "3 (bad, x)"},
                    {"k": "slot B", "v": "2 (good, talos-2-b.efi)"},
                    {"k": "rolled back", "v": "slot A (x) ran out of boot tries"}]
    assert version_rows({"running": None, "slots": {}, "note": "not UEFI"}) == [
        {"k": "boot slot", "v": "none (not UEFI)"}]
