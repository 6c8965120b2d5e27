"""The builder's boot artifacts: UKI sections, the ESP inside the raw disk and the ISO.

Built from a small stand-in kernel and initrd (the stub does not care what the
sections hold), so these run in seconds without the full image build.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest

from initramfs import bootimg
from talos_init.boot import esp, pe
from talos_init.disk import gpt


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    build = tmp_path_factory.mktemp("build")
    (build / "vmlinuz").write_bytes(b"K" * 300_000)
    (build / "initramfs.img").write_bytes(b"I" * 500_000)
    return bootimg.build_all(build, cmdline="console=ttyS0 panic=10 talos.config=http://x/c",
                             version="9.8.7")


def test_uki_has_the_four_sections_with_their_content(artifacts):
    """.osrel, .cmdline, .linux, .initrd are present and hold what was given."""
    uki = artifacts["uki"]
    secs = pe.sections(uki.read_bytes()[:8192])
    for name in (".osrel", ".cmdline", ".linux", ".initrd", ".sdmagic"):
        assert name in secs, f"{name} missing from {sorted(secs)}"
    assert pe.read_section(uki, ".cmdline").rstrip(b"\0") == \
        b"console=ttyS0 panic=10 talos.config=http://x/c"
    assert b"VERSION_ID=9.8.7\n" in pe.read_section(uki, ".osrel")
    assert pe.read_section(uki, ".linux", limit=1 << 20) == b"K" * 300_000
    assert pe.read_section(uki, ".initrd", limit=1 << 20) == b"I" * 500_000


def test_uki_sections_do_not_overlap_and_are_page_aligned(artifacts):
    """Every added section starts on a 4 KiB boundary after the previous one ends."""
    secs = sorted(pe.sections(artifacts["uki"].read_bytes()[:8192]).values(), key=lambda s: s.vma)
    for prev, cur in itertools.pairwise(secs):
        assert cur.vma >= prev.vma + prev.virtual_size, f"{cur.name} overlaps {prev.name}"
    for s in secs:
        if s.name in (".osrel", ".cmdline", ".linux", ".initrd"):
            assert s.vma % 0x1000 == 0, f"{s.name} at {s.vma:#x}"


def test_uki_osrel_has_no_sort_key(artifacts):
    """No ID=/IMAGE_ID=: systemd-boot must order our entries by name (generation), not version."""
    lines = pe.read_section(artifacts["uki"], ".osrel").decode().splitlines()
    assert not [line for line in lines if line.startswith(("ID=", "IMAGE_ID="))]


def test_builds_are_reproducible(tmp_path, artifacts):
    """A second build from the same inputs gives the same bytes, PE timestamp included."""
    build = tmp_path
    src = artifacts["uki"].parent
    for f in ("vmlinuz", "initramfs.img"):
        (build / f).write_bytes((src / f).read_bytes())
    again = bootimg.build_all(build, cmdline="console=ttyS0 panic=10 talos.config=http://x/c",
                              version="9.8.7")
    for key in ("uki", "esp", "disk", "iso"):
        assert again[key].read_bytes() == artifacts[key].read_bytes(), f"{key} differs"


def _mdir(image: str, path: str) -> str:
    return subprocess.run(["mdir", "-b", "-i", image, "::/" + path], capture_output=True,
                          text=True, check=True, env={"MTOOLS_SKIP_CHECK": "1"}).stdout


def test_esp_holds_systemd_boot_loader_conf_and_slot_a(artifacts):
    """The ESP: BOOTX64.EFI is systemd-boot, loader.conf, EFI/Linux/talos-1-a.efi is the UKI."""
    img = str(artifacts["esp"])
    assert "BOOTX64.EFI" in _mdir(img, "EFI/BOOT").upper()
    assert esp.entry_name(1, "a") in _mdir(img, "EFI/Linux")
    out = subprocess.run(["mtype", "-i", img, "::/" + esp.LOADER_CONF], capture_output=True,
                         check=True, env={"MTOOLS_SKIP_CHECK": "1"}).stdout
    assert out == esp.LOADER_CONF_TEXT
    slot = subprocess.run(["mtype", "-i", img, f"::/{esp.LINUX_DIR}/{esp.entry_name(1, 'a')}"],
                          capture_output=True, check=True, env={"MTOOLS_SKIP_CHECK": "1"}).stdout
    assert slot == artifacts["uki"].read_bytes()


def test_raw_disk_is_gpt_with_the_esp_as_partition_efi(artifacts):
    """Partition 1 is named EFI, typed as an ESP, and holds the ESP image byte for byte."""
    disk = artifacts["disk"]
    parts = gpt.read(str(disk), 512)
    assert [(p.name, str(p.type)) for p in parts] == [
        ("EFI", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b")]
    with open(disk, "rb") as f:
        f.seek(parts[0].start_bytes(512))
        assert f.read(1 << 20) == artifacts["esp"].read_bytes()[:1 << 20]


def test_iso_boots_by_el_torito_efi_and_carries_the_esp_as_a_partition(artifacts):
    """xorriso reports an EFI El Torito boot image; the appended GPT partition is a FAT ESP."""
    report = subprocess.run(["xorriso", "-indev", str(artifacts["iso"]), "-report_el_torito",
                             "plain"], capture_output=True, text=True, check=True).stdout
    assert "El Torito boot img :   1  UEFI" in report, report
    parts = gpt.read(str(artifacts["iso"]), 512)
    efi = [p for p in parts if str(p.type) == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"]
    assert len(efi) == 1
    with open(artifacts["iso"], "rb") as f:
        f.seek(efi[0].start_bytes(512))
        boot_sector = f.read(512)
    assert boot_sector[82:90] == b"FAT32   "
