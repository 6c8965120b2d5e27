"""/etc/machine-id: stable for the life of the machine, as the kubelet and CNIs expect.

The SMBIOS product UUID when the firmware gives a real one (a VM's or a board's
identity, which a clone does not share); otherwise an ID generated at the first
boot and kept on /var, so it survives reboots wherever /var does. Every path
is a parameter for tests.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from talos_init.atomicfile import write_atomic, write_if_changed

ETC = Path("/etc/machine-id")
STORED = Path("/var/lib/talos/machine-id")
PRODUCT_UUID = Path("/sys/class/dmi/id/product_uuid")
MACHINE_ID = re.compile(r"[0-9a-f]{32}")
# Firmware placeholders: not an identity (QEMU without -uuid gives zeros).
PLACEHOLDERS = frozenset({"0" * 32, "f" * 32, "03000200040005000006000700080009"})


def from_product_uuid(path: Path = PRODUCT_UUID) -> str | None:
    """The product UUID as 32 lowercase hex digits, or None (absent, unreadable, placeholder)."""
    try:
        value = uuid.UUID(path.read_text().strip()).hex
    except (OSError, ValueError):
        return None
    return None if value in PLACEHOLDERS else value


def ensure(etc: Path = ETC, stored: Path = STORED,
           product_uuid: Path = PRODUCT_UUID) -> tuple[str, str]:
    """Write /etc/machine-id; returns (id, source: smbios, stored or generated). Raises OSError."""
    machine_id, source = from_product_uuid(product_uuid), "smbios"
    if machine_id is None:
        try:
            kept = stored.read_text().strip()
        except FileNotFoundError:
            kept = ""
        if MACHINE_ID.fullmatch(kept):
            machine_id, source = kept, "stored"
        else:  # first boot, or a damaged file: a new one, written before it is used
            machine_id, source = uuid.uuid4().hex, "generated"
            write_atomic(stored, f"{machine_id}\n".encode(), 0o444)
    write_if_changed(etc, f"{machine_id}\n".encode(), 0o444)
    return machine_id, source
