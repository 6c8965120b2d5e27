"""The node's side of the boot slots: find the ESPs, mount them, run the plans.

The ESP stays unmounted except while a plan runs (a power cut then finds a
clean FAT), mounted at ``/run/talos/esp`` (the install disk's) or
``/run/talos/boot-esp`` (the medium we booted from). efivarfs is mounted
read-only when first needed: systemd-boot's variables say which entry and
which partition this boot came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from talos_init import kmodules, syscalls
from talos_init.boot import esp, espio, pe, slots
from talos_init.disk import gpt
from talos_init.log import get_logger

log = get_logger("boot")

ESP_MOUNT = Path("/run/talos/esp")
GOOD_MARKER = Path("/run/talos/boot-good")  # written by mark_good: the trial deadline's end
BOOT_ESP_MOUNT = Path("/run/talos/boot-esp")
SYSTEMD_BOOT_IN_IMAGE = Path("/usr/lib/talos/systemd-bootx64.efi")
MODULES = ("vfat", "nls_cp437", "nls_ascii")
# The kernel's defaults would ask for whatever codepage and charset it was built with.
VFAT_OPTIONS = "codepage=437,iocharset=ascii,shortname=mixed,errors=remount-ro"
ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
MAX_IMAGE = 256 << 20  # an upgrade image larger than this is refused


class BootError(RuntimeError):
    """A boot-slot operation that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Part:
    node: str  # /dev/vda1
    disk: str  # /dev/vda
    number: int
    name: str  # GPT partition name
    unique: uuid.UUID | None
    type: uuid.UUID | None


def _uevent(path: Path) -> dict[str, str]:
    try:
        return dict(line.partition("=")[::2] for line in path.read_text().splitlines() if "=" in line)
    except OSError:
        return {}


def partitions(sys_block: Path = Path("/sys/class/block"), dev: str = "/dev") -> list[Part]:
    """Every partition the kernel knows, with GPT names and GUIDs read from the table."""
    tables: dict[str, dict[int, gpt.Partition]] = {}
    out = []
    for entry in sorted(sys_block.iterdir()) if sys_block.is_dir() else []:
        ev = _uevent(entry / "uevent")
        if ev.get("DEVTYPE") != "partition":
            continue
        disk = f"{dev}/{entry.resolve().parent.name}"
        if disk not in tables:
            try:
                tables[disk] = {p.number: p for p in gpt.read(disk, 512)}
            except (OSError, gpt.GptError):
                tables[disk] = {}
        number = int(ev.get("PARTN", "0") or 0)
        g = tables[disk].get(number)
        out.append(Part(f"{dev}/{ev.get('DEVNAME', entry.name)}", disk, number,
                        ev.get("PARTNAME", g.name if g else ""), g.unique if g else None,
                        g.type if g else None))
    return out


def ensure_efivarfs(efivars: Path = espio.EFIVARS) -> bool:
    """Mount efivarfs read-only if the firmware is UEFI and it is not there; False on BIOS."""
    if not efivars.parent.is_dir():
        return False  # no /sys/firmware/efi: booted by a BIOS or by QEMU's -kernel
    if any(efivars.iterdir()) if efivars.is_dir() else False:
        return True
    try:
        kmodules.load(["efivarfs"])
    except (OSError, LookupError) as exc:
        log.debug("efivarfs_module", error=str(exc), note="built in or missing")
    try:
        syscalls.mount("efivarfs", efivars, "efivarfs",
                       syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    except OSError as exc:
        if exc.errno != 16:  # EBUSY: already mounted
            raise BootError(f"mounting efivarfs at {efivars}: {exc.strerror}") from None
    return True


def boot_esp(parts: list[Part]) -> Part | None:
    """The partition systemd-boot was loaded from (LoaderDevicePartUUID), if any."""
    if not ensure_efivarfs():
        return None
    want = espio.boot_partition_uuid()
    if want is None:
        return None
    return next((p for p in parts if p.unique and str(p.unique) == want), None)


def install_esp(parts: list[Part], disk: str | None = None) -> Part | None:
    """The partition named EFI on ``disk`` (else the one we booted from, else the only one)."""
    named = [p for p in parts if p.name == esp.PART_NAME and (disk is None or p.disk == disk)]
    if disk is not None or len(named) <= 1:
        return named[0] if named else None
    booted = boot_esp(parts)
    return booted if booted in named else None


@contextlib.contextmanager
def mounted(part: Part, where: Path, readonly: bool = False) -> Iterator[espio.DirFs]:
    """The FAT file system of ``part`` at ``where`` for the duration; always unmounted."""
    try:
        kmodules.load(list(MODULES))
    except (OSError, LookupError) as exc:
        raise BootError(f"loading {', '.join(MODULES)}: {exc}") from None
    where = where.with_name(f"{where.name}.{os.getpid()}")  # apid and boot-assess may overlap
    where.mkdir(parents=True, exist_ok=True)
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC | syscalls.MS_NOATIME
    if readonly:
        flags |= syscalls.MS_RDONLY
    try:
        syscalls.mount(part.node, where, "vfat", flags, VFAT_OPTIONS)
    except OSError as exc:
        raise BootError(f"mounting {part.node} (partition {part.name or part.number} of "
                        f"{part.disk}) as vfat: {exc.strerror}") from None
    try:
        yield espio.DirFs(where)
    finally:
        syscalls.sync()
        syscalls.umount2(where)
        where.rmdir()


def _running_entry(parts: list[Part]) -> tuple[Part, str]:
    """The ESP this boot came from and the name of the UKI it started there.

    Only a boot by systemd-boot from a disk partition names one: the ISO attached as a
    disk or stick, an installed disk. QEMU's -kernel and a CD's El Torito image do not.
    """
    src = boot_esp(parts)
    selected = espio.selected_entry() if src else None
    if src is None or selected is None:
        raise BootError("this boot was not started by systemd-boot from a disk partition "
                        "(LoaderDevicePartUUID/LoaderEntrySelected unset: -kernel or a CD), so "
                        "there is no image to install: boot the ISO written to a disk or stick")
    return src, selected


def install(disk: str, sys_block: Path = Path("/sys/class/block")) -> dict:
    """Fill the install disk's ESP (formatted by the layout): systemd-boot, loader.conf,
    this boot's image as slot A. Idempotent: an ESP that has a slot already is left alone."""
    parts = partitions(sys_block)
    target = install_esp(parts, disk)
    if target is None:
        raise BootError(f"{disk}: no partition named {esp.PART_NAME} (the install layout makes it)")
    src, selected = _running_entry(parts)
    if src.node == target.node:
        return {"esp": target.node, "entries": None, "note": "booted from this ESP already"}
    with mounted(src, BOOT_ESP_MOUNT, readonly=True) as medium:
        entry = slots.running(slots.entries(espio.linux_names(medium)), selected)
        image = medium.root / esp.LINUX_DIR / (entry.name if entry else selected)
        with mounted(target, ESP_MOUNT) as fs:
            names = espio.linux_names(fs)
            if slots.entries(names):
                return {"esp": target.node, "entries": names, "note": "slots present already"}
            espio.run(fs, slots.plan_install(names),
                      {"image": image, "bootloader": SYSTEMD_BOOT_IN_IMAGE})
            names = espio.linux_names(fs)
    log.info("boot_installed", esp=target.node, slot="A", image=image.name, entries=",".join(names))
    return {"esp": target.node, "entries": names}


def install_boot_slots(disk: str) -> None:
    """The var service's last install step: fill the new ESP when a boot medium started us.
    Never raises: /var is set up either way; a node without slots still runs (from the ISO)."""
    if not ensure_efivarfs() or espio.selected_entry() is None:
        log.info("boot_install_skipped", disk=disk,
                 reason="not started by systemd-boot (QEMU -kernel or BIOS): no image to copy")
        return
    try:
        install(disk)
    except (BootError, OSError) as exc:
        log.error("boot_install_failed", disk=disk, error=str(exc),
                  effect="the disk holds /var but cannot boot by itself; boot the ISO again")


def version_of(path: Path) -> str | None:
    """VERSION_ID from a UKI's .osrel section."""
    try:
        osrel = pe.read_section(path, ".osrel") or b""
    except (OSError, pe.PeError):
        return None
    for line in osrel.decode(errors="replace").splitlines():
        if line.startswith("VERSION_ID="):
            return line.split("=", 1)[1].strip('"')
    return None


def _booted_slot() -> tuple[Part, str]:
    """The installed ESP this boot's slot came from, and LoaderEntrySelected; else BootError."""
    if not ensure_efivarfs():
        raise BootError("not booted by UEFI firmware (QEMU -kernel or BIOS): no boot slots")
    selected = espio.selected_entry()
    booted = boot_esp(partitions())
    if booted is None or selected is None:
        raise BootError("this boot was not started by systemd-boot from a disk partition: "
                        "no boot slots")
    if booted.name != esp.PART_NAME:
        raise BootError(f"booted from {booted.node} (partition {booted.name!r}: a boot medium, "
                        f"not an installed ESP named {esp.PART_NAME}): install first")
    return booted, selected


def status() -> dict:
    """The running slot, each slot's entry, state and version, a rollback if there was one.
    Booted from a medium, the install disk's slots are listed with no running slot."""
    try:
        target, selected = _booted_slot()
        note = None
    except BootError as exc:
        note, selected = str(exc), None
        install = install_esp(partitions()) if ensure_efivarfs() else None
        if install is None:
            return {"running": None, "slots": {}, "rolled_back": None, "note": note}
        target = install
    # Not read-only: the kernel shares one superblock between the mounts of a device, so a
    # read-only one here would make boot-assess's or an install's rw mount fail (EBUSY).
    with mounted(target, ESP_MOUNT) as fs:
        names = espio.linux_names(fs)
        st = slots.status(names, selected)
        for info in st["slots"].values():
            info["version"] = version_of(fs.root / esp.LINUX_DIR / info["entry"])
    st["selected"] = selected
    if note:
        st["note"] = note
    return st


def _renamed_to(step: slots.Step) -> str:
    """The entry a plan's Rename step leaves (mark-good's only step, an upgrade's last)."""
    if not isinstance(step, slots.Rename):
        raise BootError(f"internal: the plan's step {step!r} is not the expected rename")
    return step.new.rsplit("/", 1)[1]


def mark_good() -> dict:
    """Drop this boot's counter: it got to PID 1, apid and containerd ready."""
    try:
        target, selected = _booted_slot()
    except BootError as exc:
        return {"marked": None, "note": str(exc)}
    with mounted(target, ESP_MOUNT) as fs:
        steps = slots.plan_mark_good(espio.linux_names(fs), selected)
        espio.run(fs, steps, {})
    marked = _renamed_to(steps[0]) if steps else None
    log.info("boot_marked_good", entry=marked or selected, changed=bool(steps))
    GOOD_MARKER.write_text((marked or selected) + "\n")
    return {"marked": marked, "selected": selected}


def on_trial(selected: str | None) -> bool:
    """Whether systemd-boot chose this boot's entry with a boot counter on it."""
    parsed = esp.parse_name(selected) if selected else None
    return parsed is not None and parsed[2] is not None


def trial_deadline(seconds: float, marker: Path = GOOD_MARKER,
                   selected: str | None = None, wait=time.sleep, clock=time.monotonic) -> str:
    """A boot on trial that is not marked good within ``seconds`` (a hang: apid or containerd
    never ready) reboots, so systemd-boot counts the try and falls back when they run out.
    PID 1 reboots on SIGTERM (busybox init's convention)."""
    if selected is None:
        selected = espio.selected_entry() if ensure_efivarfs() else None
    if not on_trial(selected):
        return "not on trial"
    deadline = clock() + seconds
    while clock() < deadline:
        if marker.exists():
            return "marked good"
        wait(min(5.0, max(0.0, deadline - clock())))
    if marker.exists():
        return "marked good"
    log.error("boot_trial_expired", entry=selected, seconds=seconds,
              effect="rebooting: systemd-boot counts this try and falls back when none is left")
    os.kill(1, signal.SIGTERM)
    return "rebooting"


def check_image(path: Path) -> str:
    """A UKI we can boot: .osrel, .linux and .initrd present. Returns its VERSION_ID."""
    try:
        with open(path, "rb") as f:
            secs = pe.sections(f.read(8192))
    except (OSError, pe.PeError) as exc:
        raise BootError(f"the upgrade image is not a unified kernel image: {exc}") from None
    missing = [s for s in (".osrel", ".linux", ".initrd") if s not in secs]
    if missing:
        raise BootError(f"the upgrade image lacks section(s) {', '.join(missing)}: build it with "
                        "python -m initramfs.bootimg (talos.efi)")
    return version_of(path) or "unknown"


def upgrade(image: Path, tries: int = slots.DEFAULT_TRIES, sha256: str | None = None) -> dict:
    """Write ``image`` to the other slot with ``tries`` boot attempts; first at the next boot."""
    if sha256 is not None:
        h = hashlib.sha256()
        with open(image, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != sha256.lower():
            raise BootError(f"the upgrade image's sha256 is {h.hexdigest()}, not {sha256}")
    version = check_image(image)
    target, selected = _booted_slot()
    with mounted(target, ESP_MOUNT) as fs:
        try:
            steps = slots.plan_upgrade(espio.linux_names(fs), selected, tries)
        except slots.SlotError as exc:
            raise BootError(str(exc)) from None
        espio.run(fs, steps, {"image": image})
        names = espio.linux_names(fs)
    new = _renamed_to(steps[-1])
    log.info("boot_upgrade_written", entry=new, version=version, tries=tries)
    return {"entry": new, "slot": slots.entries([new])[0].slot.upper(), "version": version,
            "tries": tries, "entries": names}


def rollback() -> dict:
    """Make the other slot the firmware's next choice."""
    target, selected = _booted_slot()
    with mounted(target, ESP_MOUNT) as fs:
        try:
            steps = slots.plan_rollback(espio.linux_names(fs), selected)
        except slots.SlotError as exc:
            raise BootError(str(exc)) from None
        espio.run(fs, steps, {})
        names = espio.linux_names(fs)
    first = slots.chosen(slots.entries(names))
    log.info("boot_rollback", next=first.name if first else None)
    return {"next": first.slot.upper() if first else None, "entries": names}
