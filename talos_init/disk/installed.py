"""Find an installed /var (a partition named EPHEMERAL) through sysfs: no udev, no config.

The kernel reads GPT partition names itself and publishes them as PARTNAME in
each partition's uevent file; devtmpfs makes the /dev node. That is enough to
find the partition a first boot made, on every later boot, before udev or the
machine config exist. A partition without a PARTNAME (a kernel that does not
parse GPT and got it through BLKPG, an MBR partition) counts when its ext4
superblock is labelled EPHEMERAL.
"""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

from talos_init import wildcard
from talos_init.disk import LABEL, NOT_DISKS, ext4sb


# partition: /dev/vda1, disk: /dev/vda
Candidate = namedtuple("Candidate", "partition disk")


def _uevent(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)


def ext4_label(devnode: str) -> str | None:
    """The ext4 volume label on ``devnode``, None when it holds no ext2/3/4 superblock."""
    sb = ext4sb.read(devnode)
    return None if sb is None else sb.label


def find(sys_block: Path = Path("/sys/class/block"), disks: tuple[str, ...] | None = None,
         dev: str = "/dev", name: str = LABEL) -> list[Candidate]:
    """Every partition named ``name`` (GPT name, else ext4 label; EPHEMERAL unless told).
    ``disks``: name patterns of the disks to look at (default: every disk but loop, ram,
    dm...: never install disks)."""
    found = []
    for entry in sorted(sys_block.iterdir()) if sys_block.is_dir() else []:
        ev = _uevent(entry / "uevent")
        if ev.get("DEVTYPE") != "partition" or ev.get("PARTNAME", name) != name:
            continue
        disk = entry.resolve().parent.name  # .../block/vda/vda1
        if disks is None:
            if any(wildcard.match(disk, p) for p in NOT_DISKS):
                continue
        elif not any(wildcard.match(disk, p) for p in disks):
            continue
        node = f"{dev}/{ev.get('DEVNAME', entry.name)}"
        if "PARTNAME" in ev or ext4_label(node) == name:
            found.append(Candidate(node, f"{dev}/{disk}"))
    return found
