"""The generated hostname of a node nobody named: ``talos-xxx-yyy``, stable per machine.

Like Talos' ``stableHostname``: the name is a hash of something persistent and
specific to the machine that exists before any disk or config, so it is the
same after every reboot and differs between machines. The identity is the
SMBIOS product UUID when it is readable and real (not all 0 or all f, which
firmware and some hypervisors report when unset), else the permanent MAC of the
first physical NIC (by ifindex). No I/O but one sysfs read.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from talos_init.networkd.links import Link

PREFIX = "talos-"
_ALPHABET = string.digits + string.ascii_lowercase  # base 36: lowercase, valid in a DNS label
_UUID_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Identity:
    source: str  # "smbios-uuid" or "mac"
    value: str
    link: str | None = None  # the NIC whose MAC it is


def product_uuid(sysfs: Path) -> str | None:
    """The SMBIOS system UUID, lowercase, or None when unreadable or a placeholder."""
    try:
        raw = (sysfs / "class/dmi/id/product_uuid").read_text().strip().lower()
    except (OSError, UnicodeDecodeError):
        return None  # no DMI (not x86/arm64 SMBIOS), or not readable
    digits = raw.replace("-", "")
    if not _UUID_RE.match(digits) or set(digits) in ({"0"}, {"f"}):
        return None
    return raw


def first_nic_mac(links: Iterable[Link]) -> tuple[str, str] | None:
    """(link name, MAC) of the physical NIC with the lowest ifindex; its permanent MAC if known."""
    nics = sorted((lk for lk in links if lk.physical and not lk.loopback), key=lambda lk: lk.index)
    for link in nics:
        mac = link.perm_addr or link.mac
        if mac and mac != "00:00:00:00:00:00":
            return link.name, mac
    return None


def identity(sysfs: Path, links: Iterable[Link]) -> Identity | None:
    uuid = product_uuid(sysfs)
    if uuid is not None:
        return Identity("smbios-uuid", uuid)
    nic = first_nic_mac(links)
    if nic is not None:
        return Identity("mac", nic[1], nic[0])
    return None


def derive(ident: Identity) -> str:
    """``talos-`` + 3 + ``-`` + 3 base-36 characters of a SHA-256 of the identity."""
    n = int.from_bytes(hashlib.sha256(f"{ident.source}:{ident.value}".encode()).digest(), "big")
    chars = []
    for _ in range(6):
        n, digit = divmod(n, 36)
        chars.append(_ALPHABET[digit])
    return f"{PREFIX}{''.join(chars[:3])}-{''.join(chars[3:])}"
