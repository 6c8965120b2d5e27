"""What an installed ESP holds and how its boot entries are named (no I/O).

    EFI/BOOT/BOOTX64.EFI            systemd-boot at the removable path (no NVRAM entry)
    loader/loader.conf              timeout 0, no default (see below)
    EFI/Linux/talos-<gen>-<slot>[+LEFT[-DONE]].efi   unified kernel images, slots a and b

systemd-boot lists every ``EFI/Linux/*.efi`` carrying an ``.osrel`` section (Boot
Loader Specification type #2). With no ``default`` in loader.conf it boots the first
entry of its order: entries with no tries left last, then by file name, newest version
first (our UKIs carry no ``ID=``, so no sort key orders them by version instead).
A higher generation number therefore wins. A ``default`` pattern is not used because
systemd-boot matches it against every entry, a bad one (``+0``) included, so a broken
slot named by it would be booted forever (systemd 252, boot.c config_entry_find).
"""

from __future__ import annotations

import re

PART_NAME = "EFI"  # GPT partition name, as in the install layout (docs/for-devs/boot.md)
FAT_LABEL = "EFI"
BOOTLOADER = "EFI/BOOT/BOOTX64.EFI"
LINUX_DIR = "EFI/Linux"
LOADER_CONF = "loader/loader.conf"
DIRECTORIES = ("EFI", "EFI/BOOT", "EFI/Linux", "loader")
SLOTS = ("a", "b")
# "editor no": the kernel command line cannot be changed at the console.
LOADER_CONF_TEXT = b"timeout 0\neditor no\nauto-entries no\nauto-firmware no\n"

_NAME = re.compile(r"^talos-(\d{1,9})-([ab])(?:\+(\d{1,4})(?:-(\d{1,4}))?)?\.efi$")


def entry_name(generation: int, slot: str, left: int | None = None, done: int = 0) -> str:
    if slot not in SLOTS:
        raise ValueError(f"slot {slot!r}: must be one of {', '.join(SLOTS)}")
    counter = "" if left is None else f"+{left}" + (f"-{done}" if done else "")
    return f"talos-{generation}-{slot}{counter}.efi"


def parse_name(name: str) -> tuple[int, str, int | None, int] | None:
    """(generation, slot, tries left or None, tries done) for one of our entry names, else None."""
    m = _NAME.match(name.lower())
    if not m:
        return None
    left = None if m.group(3) is None else int(m.group(3))
    return int(m.group(1)), m.group(2), left, int(m.group(4) or 0)


def initial_files() -> dict[str, bytes]:
    """The small files of a fresh ESP besides the boot loader and the slot image."""
    return {LOADER_CONF: LOADER_CONF_TEXT}
