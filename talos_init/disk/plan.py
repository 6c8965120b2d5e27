"""What to do with the install disk: a pure decision from what was probed.

Never destroys data unless the config says ``wipe: true``: a disk that holds
anything we did not make is refused with a message naming what it holds.
As in Talos, ``wipe`` applies at installation only: a disk whose EPHEMERAL
partition holds our ext4 is installed and is checked, never wiped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from talos_init.disk import EFI_LABEL, EFI_MIB, FSTYPE, LABEL, STATE_LABEL, STATE_MIB, gpt

MIB = 1 << 20
MIN_EPHEMERAL_MIB = 64  # below this, /var cannot hold even one image


@dataclass(frozen=True)
class PartSpec:
    name: str
    typecode: str  # sgdisk's short type code
    mib: int  # 0: the rest of the disk
    fstype: str  # vfat | ext4


# The install layout, in disk order, each partition found by its name later.
LAYOUT = (PartSpec(EFI_LABEL, "ef00", EFI_MIB, "vfat"),
          PartSpec(STATE_LABEL, "8300", STATE_MIB, FSTYPE),
          PartSpec(LABEL, "8300", 0, FSTYPE))


def sgdisk_args(disk: str, size: int) -> list[str]:
    """sgdisk's arguments for a new table holding ``LAYOUT``; DiskError-free: a disk too
    small raises ValueError naming the sizes."""
    need = (sum(p.mib for p in LAYOUT) + MIN_EPHEMERAL_MIB + 2) * MIB  # +2: GPT, alignment
    if size < need:
        raise ValueError(f"{disk} is {size // MIB} MiB; the install layout "
                         f"({', '.join(f'{p.name} {p.mib or MIN_EPHEMERAL_MIB}+ MiB' for p in LAYOUT)})"
                         f" needs at least {need // MIB} MiB")
    args = ["--clear"]
    for n, p in enumerate(LAYOUT, 1):
        args += [f"--new={n}:0:{f'+{p.mib}M' if p.mib else '0'}", f"--typecode={n}:{p.typecode}",
                 f"--change-name={n}:{p.name}"]
    return args + [disk]


class Action(enum.Enum):
    WIPE = "wipe"  # erase, partition, format (wipe: true)
    PARTITION = "partition"  # blank disk: partition and format
    FORMAT = "format"  # our partition exists but holds no filesystem (first boot interrupted)
    CHECK = "check"  # our partition holds ext4: check and mount
    CHECK_WHOLE = "check-whole"  # the whole disk is ext4: check and mount it
    REFUSE = "refuse"


@dataclass(frozen=True)
class Plan:
    action: Action
    reason: str
    partition: gpt.Partition | None = None


def decide(disk: str, disk_sig: dict[str, str], partitions: list[gpt.Partition] | None,
           part_sig: dict[str, str] | None, wipe: bool, part_zeroed: bool = False) -> Plan:
    """``partitions`` is the GPT content (None: no readable GPT); ``part_sig`` the probe
    of our partition when there is one; ``part_zeroed`` whether its start is all zeros.
    ``wipe`` turns a refusal (or a foreign whole-disk ext4) into WIPE; an installed /var
    (CHECK) or our interrupted first boot (FORMAT) stays as it is."""
    plan = _inspect(disk, disk_sig, partitions, part_sig, part_zeroed)
    if wipe and plan.action in (Action.REFUSE, Action.CHECK_WHOLE):
        return Plan(Action.WIPE, f"machine.install.wipe is true and {disk} holds no installed "
                    f"/var ({plan.reason})")
    if wipe and plan.action is Action.CHECK:
        return Plan(Action.CHECK, f"{plan.reason}; the disk is installed: machine.install.wipe "
                    "applies at installation only (a failed check still wipes)", plan.partition)
    return plan


def _inspect(disk: str, disk_sig: dict[str, str], partitions: list[gpt.Partition] | None,
             part_sig: dict[str, str] | None, part_zeroed: bool) -> Plan:
    if not disk_sig:
        return Plan(Action.PARTITION, "the disk is blank")
    pttype, fstype = disk_sig.get("PTTYPE"), disk_sig.get("TYPE")
    if pttype == "gpt":
        if partitions is None:
            return Plan(Action.REFUSE, f"{disk} has a GPT signature but its table cannot be read")
        ours = [p for p in partitions if p.name == LABEL]
        if not ours:
            names = ", ".join(f"{p.number}:{p.name or '(unnamed)'}" for p in partitions) or "none"
            return Plan(Action.REFUSE, f"{disk} holds a GPT with no partition named {LABEL} "
                        f"(partitions: {names}); it may be someone else's data. "
                        "Set machine.install.wipe: true to erase it")
        part = ours[0]
        part_fs = (part_sig or {}).get("TYPE")  # blkid also reports PART_ENTRY_* from the table
        if not part_fs and part_zeroed:
            return Plan(Action.FORMAT, f"partition {LABEL} holds no filesystem yet", part)
        if not part_fs:
            # Not blank yet unrecognisable: most likely a damaged superblock. Never format it.
            return Plan(Action.REFUSE, f"{disk} partition {part.number} ({LABEL}) holds data but "
                        f"no recognisable filesystem (damaged {FSTYPE} superblock?). Not mounting "
                        "/var; repair it with e2fsck -b <backup superblock> from another machine, "
                        "or set machine.install.wipe: true to erase it")
        if part_fs == FSTYPE:
            return Plan(Action.CHECK, f"partition {LABEL} holds {FSTYPE}", part)
        return Plan(Action.REFUSE, f"{disk} partition {part.number} ({LABEL}) holds "
                    f"{part_fs}, expected {FSTYPE}. "
                    "Set machine.install.wipe: true to erase it")
    if fstype == FSTYPE and not pttype:
        return Plan(Action.CHECK_WHOLE, f"the whole disk holds {FSTYPE}")
    what = f"a {pttype} partition table" if pttype else f"a {fstype or 'unknown'} signature"
    return Plan(Action.REFUSE, f"{disk} holds {what}, not ours. "
                "Set machine.install.wipe: true to erase it")


# e2fsck -p exit status (e2fsck(8)): bits that may be combined.
FSCK_CORRECTED = 1
FSCK_REBOOT = 2
FSCK_UNCORRECTED = 4
FSCK_OPERATIONAL = 8


def fsck_verdict(code: int) -> tuple[bool, str]:
    """(may mount, what happened) from e2fsck -p's exit status."""
    if code == 0:
        return True, "clean"
    if code & ~(FSCK_CORRECTED | FSCK_REBOOT) == 0:
        return True, "errors found and corrected"
    if code & FSCK_UNCORRECTED:
        return False, "uncorrectable errors remain"
    if code & FSCK_OPERATIONAL:
        return False, "e2fsck could not check it (operational error: bad superblock or device)"
    return False, f"e2fsck exited with status {code}"
