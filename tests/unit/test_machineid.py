"""/etc/machine-id from SMBIOS, else generated once and kept on /var."""

from __future__ import annotations

import stat

from talos_init.machineid import ensure


def _paths(tmp_path):
    return tmp_path / "etc/machine-id", tmp_path / "var/lib/talos/machine-id", tmp_path / "uuid"


def test_smbios_uuid_is_the_machine_id(tmp_path):
    """A real product UUID becomes the ID (lowercase, no dashes); nothing is stored on /var."""
    etc, stored, uuid = _paths(tmp_path)
    uuid.write_text("4C4C4544-0042-3510-8052-B4C04F384B32\n")
    assert ensure(etc, stored, uuid) == ("4c4c4544004235108052b4c04f384b32", "smbios")
    assert etc.read_text() == "4c4c4544004235108052b4c04f384b32\n"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o444 and not stored.exists()


def test_generated_once_then_kept(tmp_path):
    """QEMU's all-zero UUID is no identity: an ID is generated, stored, and reused next boot."""
    etc, stored, uuid = _paths(tmp_path)
    uuid.write_text("00000000-0000-0000-0000-000000000000\n")
    first, source = ensure(etc, stored, uuid)
    assert source == "generated" and stored.read_text() == first + "\n"
    etc.unlink()  # the next boot: a fresh /etc from the initramfs
    assert ensure(etc, stored, uuid) == (first, "stored")
    assert etc.read_text() == first + "\n"


def test_damaged_stored_id_is_replaced(tmp_path):
    """A stored file that is not 32 hex digits (torn, edited) is replaced by a new ID."""
    etc, stored, uuid = _paths(tmp_path)
    stored.parent.mkdir(parents=True)
    stored.write_text("not-an-id\n")
    machine_id, source = ensure(etc, stored, uuid)  # no SMBIOS file at all
    assert source == "generated" and len(machine_id) == 32
    assert stored.read_text() == machine_id + "\n"
