"""The ESP writer on a real FAT32 image: a power cut after every step of every plan (and
in the middle of every write) leaves an ESP whose boot choice is a complete image.

"Bootable" is judged the way the firmware would: BOOTX64.EFI is the whole systemd-boot,
loader.conf is whole, and the first entry of systemd-boot's order (slots.boot_order,
from AUTOMATIC_BOOT_ASSESSMENT.md) holds the complete old or the complete new image.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from talos_init.boot import esp, espio, slots
from talos_init.boot.slots import Write
from tests.host.boot.mtoolsfs import MtoolsFs, blank_esp

OLD = os.urandom(150_000)
NEW = os.urandom(170_000)
LOADER = b"systemd-boot stand-in " + os.urandom(40_000)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("esp")
    (d / "old.efi").write_bytes(OLD)
    (d / "new.efi").write_bytes(NEW)
    (d / "loader.efi").write_bytes(LOADER)
    blank = blank_esp(d / "blank.img")
    a = d / "installed.img"
    shutil.copy(blank, a)
    espio.run(MtoolsFs(a), slots.plan_install([]), {"image": d / "old.efi",
                                                     "bootloader": d / "loader.efi"})
    return {"blank": blank, "installed": a, "old": d / "old.efi", "new": d / "new.efi",
            "loader": d / "loader.efi"}


def boot_choice(fs: MtoolsFs) -> bytes | None:
    """The image the firmware would start, or None when the ESP is not bootable at all."""
    if fs.read(esp.BOOTLOADER) != LOADER:
        return None
    assert fs.read(esp.LOADER_CONF) == esp.LOADER_CONF_TEXT
    first = slots.chosen(slots.entries(fs.list(esp.LINUX_DIR)))
    assert first is not None, "a boot loader with no entry"
    return fs.read(f"{esp.LINUX_DIR}/{first.name}")


def cut_everywhere(start: Path, steps, sources, tmp: Path, check) -> int:
    """Apply every prefix of ``steps`` (and each write half done) to a copy of ``start``."""
    cuts = 0
    for k in range(len(steps) + 1):
        variants = [False, True] if k < len(steps) and isinstance(steps[k], Write) else [False]
        for torn in variants:
            img = tmp / f"cut-{k}-{torn}.img"
            shutil.copy(start, img)
            fs = MtoolsFs(img)
            espio.run(fs, steps[:k], sources)
            if torn:
                w = steps[k]
                data = w.source if isinstance(w.source, bytes) else sources[w.source].read_bytes()
                fs.write(w.path, data[:len(data) // 2])
            check(k, torn, fs)
            img.unlink()
            cuts += 1
    return cuts


def test_install_is_never_half_bootable(images, tmp_path):
    """Before its last step the ESP is not bootable (the ISO still is); after, it boots A."""
    steps = slots.plan_install([])
    sources = {"image": images["old"], "bootloader": images["loader"]}

    def check(k, torn, fs):
        choice = boot_choice(fs)
        if k < len(steps):
            assert choice is None, f"bootable after {k} steps of {len(steps)}"
        else:
            assert choice == OLD

    assert cut_everywhere(images["blank"], steps, sources, tmp_path, check) == 10  # 7 prefixes, 3 torn writes


def test_upgrade_boots_the_old_image_until_its_last_step_then_the_new(images, tmp_path):
    """Every cut boots the whole old image, except after the final rename: the whole new one."""
    fs = MtoolsFs(images["installed"])
    steps = slots.plan_upgrade(fs.list(esp.LINUX_DIR), "talos-1-a.efi", tries=3)

    def check(k, torn, fs):
        assert boot_choice(fs) == (NEW if k == len(steps) else OLD), f"cut after {k}, torn={torn}"

    cut_everywhere(images["installed"], steps, {"image": images["new"]}, tmp_path, check)


def test_upgrade_over_an_old_b_and_a_leftover_tmp(images, tmp_path):
    """The stale .tmp and the old B are deleted first; no cut boots anything but A or new B."""
    start = tmp_path / "start.img"
    shutil.copy(images["installed"], start)
    fs = MtoolsFs(start)
    fs.write("EFI/Linux/talos-0-b.efi", OLD[:1000] + b"older")  # an old, lower generation
    fs.write("EFI/Linux/talos-5-b+2.efi.tmp", b"half")
    steps = slots.plan_upgrade(fs.list(esp.LINUX_DIR), "talos-1-a.efi", tries=2)
    assert len(steps) == 4

    def check(k, torn, fs):
        assert boot_choice(fs) == (NEW if k == len(steps) else OLD)

    cut_everywhere(start, steps, {"image": images["new"]}, tmp_path, check)


def test_mark_good_and_rollback_keep_a_complete_choice(images, tmp_path):
    """Marking B good and rolling back to A are single renames: before, old; after, new choice."""
    start = tmp_path / "start.img"
    shutil.copy(images["installed"], start)
    fs = MtoolsFs(start)
    espio.run(fs, slots.plan_upgrade(fs.list(esp.LINUX_DIR), "talos-1-a.efi", 3),
              {"image": images["new"]})
    fs.rename("EFI/Linux/talos-2-b+3.efi", "EFI/Linux/talos-2-b+2-1.efi")  # the firmware's try
    good = slots.plan_mark_good(fs.list(esp.LINUX_DIR), "talos-2-b+3.efi")
    cut_everywhere(start, good, {}, tmp_path, lambda k, t, f: assert_choice(f, NEW))
    espio.run(fs, good, {})
    assert fs.list(esp.LINUX_DIR) == ["talos-1-a.efi", "talos-2-b.efi"]
    back = slots.plan_rollback(fs.list(esp.LINUX_DIR), "talos-2-b.efi")
    cut_everywhere(start, back, {}, tmp_path,
                   lambda k, t, f: assert_choice(f, OLD if k == len(back) else NEW))


def assert_choice(fs: MtoolsFs, expected: bytes) -> None:
    # Named, not compared with ==: pytest's diff of two whole images takes minutes.
    def which(image: bytes | None) -> str:
        return {None: "nothing", OLD: "the old image", NEW: "the new image"}.get(
            image, "a torn or foreign image")
    got = boot_choice(fs)
    if got != expected:
        raise AssertionError(f"the firmware would boot {which(got)}, not {which(expected)}")


def test_dirfs_runs_the_same_plan_with_fsync(images, tmp_path):
    """The node's writer (a mounted directory, fsync per step) leaves the same names."""
    root = tmp_path / "esp"
    root.mkdir()
    fs = espio.DirFs(root)
    espio.run(fs, slots.plan_install([]), {"image": images["old"], "bootloader": images["loader"]})
    espio.run(fs, slots.plan_upgrade(espio.linux_names(fs), "talos-1-a.efi", 2),
              {"image": images["new"]})
    assert espio.linux_names(fs) == ["talos-1-a.efi", "talos-2-b+2.efi"]
    assert (root / "EFI/Linux/talos-2-b+2.efi").read_bytes() == NEW
    assert (root / esp.BOOTLOADER).read_bytes() == LOADER


def test_efivars_are_read_as_systemd_writes_them(tmp_path):
    """4 attribute bytes, then a NUL-terminated UTF-16LE string."""
    var = tmp_path / f"LoaderEntrySelected-{espio.LOADER_GUID}"
    var.write_bytes(b"\x06\0\0\0" + "talos-2-b+3.efi\0".encode("utf-16-le"))
    assert espio.selected_entry(tmp_path) == "talos-2-b+3.efi"
    assert espio.boot_partition_uuid(tmp_path) is None


def test_the_check_catches_a_plan_that_writes_the_entry_in_place(images, tmp_path):
    """Control: writing the new entry straight under its final name is caught by a torn cut."""
    unsafe = [Write("EFI/Linux/talos-2-b+3.efi", "image")]
    with pytest.raises(AssertionError):
        cut_everywhere(images["installed"], unsafe, {"image": images["new"]}, tmp_path,
                       lambda k, t, f: assert_choice(f, NEW if k == 1 else OLD))
