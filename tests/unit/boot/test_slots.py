"""The A/B boot-entry state machine, driven through a model of systemd-boot's counting."""

from __future__ import annotations

import pytest

from talos_init.boot import esp, slots
from talos_init.boot.slots import Delete, Rename, SlotError, Write


def firmware_boot(names: list[str]) -> tuple[list[str], str]:
    """What systemd-boot does at a boot: pick the first entry, decrement its counter by a
    rename (AUTOMATIC_BOOT_ASSESSMENT.md), and report its old name as LoaderEntrySelected."""
    found = slots.entries(names)
    e = slots.chosen(found)
    assert e is not None, f"nothing bootable in {names}"
    if e.left is not None and e.left > 0:
        new = slots.Entry(e.generation, e.slot, e.left - 1, e.done + 1).name
        names = [new if n == e.name else n for n in names]
    return names, e.name


def apply(names: list[str], steps) -> list[str]:
    names = list(names)
    for s in steps:
        if isinstance(s, Write) and s.path.startswith(esp.LINUX_DIR + "/"):
            names.append(s.path.rsplit("/", 1)[1])
        elif isinstance(s, Rename) and s.old.startswith(esp.LINUX_DIR + "/"):
            names = [s.new.rsplit("/", 1)[1] if n == s.old.rsplit("/", 1)[1] else n for n in names]
        elif isinstance(s, Delete):
            names = [n for n in names if n != s.path.rsplit("/", 1)[1]]
    return names


def installed() -> list[str]:
    return apply([], slots.plan_install([]))


def test_names_round_trip_and_foreign_files_are_ignored():
    """Our names parse back to their parts; other files in EFI/Linux are not entries."""
    assert esp.parse_name("talos-12-b+2-1.efi") == (12, "b", 2, 1)
    assert esp.parse_name("talos-3-a.efi") == (3, "a", None, 0)
    assert esp.entry_name(3, "b", 3) == "talos-3-b+3.efi"
    assert slots.entries(["other.efi", "talos-1-a.efi.tmp", "talos-1-c.efi"]) == []


def test_install_writes_slot_a_then_loader_conf_then_the_boot_loader_last():
    """Each file is written under .tmp and renamed; BOOTX64.EFI (bootability) comes last."""
    steps = slots.plan_install([])
    assert steps[-1] == Rename(esp.BOOTLOADER + ".tmp", esp.BOOTLOADER)
    assert steps[1] == Rename("EFI/Linux/talos-1-a.efi.tmp", "EFI/Linux/talos-1-a.efi")
    assert installed() == ["talos-1-a.efi"]


def test_upgrade_goes_to_the_other_slot_first_in_order_with_its_tries():
    """From A, the new image is B, one generation up, +N: the firmware's next choice."""
    names, sel = firmware_boot(installed())
    names = apply(names, slots.plan_upgrade(names, sel, tries=2))
    assert sorted(names) == ["talos-1-a.efi", "talos-2-b+2.efi"]
    assert slots.chosen(slots.entries(names)).name == "talos-2-b+2.efi"


def test_a_good_new_boot_marks_itself_and_stays_first():
    """The counter is renamed away once the new boot is ready; A stays as the fallback."""
    names, sel = firmware_boot(installed())
    names = apply(names, slots.plan_upgrade(names, sel, tries=3))
    names, sel = firmware_boot(names)
    assert sel == "talos-2-b+3.efi" and "talos-2-b+2-1.efi" in names
    names = apply(names, slots.plan_mark_good(names, sel))
    assert sorted(names) == ["talos-1-a.efi", "talos-2-b.efi"]
    names, sel = firmware_boot(names)
    assert sel == "talos-2-b.efi"
    assert slots.plan_mark_good(names, sel) == []
    assert slots.status(names, sel) == {
        "running": "B", "rolled_back": None,
        "slots": {"A": {"entry": "talos-1-a.efi", "state": "good", "generation": 1},
                  "B": {"entry": "talos-2-b.efi", "state": "good", "generation": 2}}}


def test_a_new_boot_that_never_gets_ready_runs_out_of_tries_and_a_comes_back():
    """Three boots of B that never mark good: B is +0-3, sorted last, the firmware picks A."""
    names, sel = firmware_boot(installed())
    names = apply(names, slots.plan_upgrade(names, sel, tries=3))
    picked = []
    for _ in range(4):
        names, sel = firmware_boot(names)
        picked.append(sel)
    assert picked == ["talos-2-b+3.efi", "talos-2-b+2-1.efi", "talos-2-b+1-2.efi", "talos-1-a.efi"]
    st = slots.status(names, sel)
    assert st["running"] == "A" and st["slots"]["B"]["state"] == "bad"
    assert "slot B (talos-2-b+0-3.efi) ran out of boot tries" in st["rolled_back"]


def test_upgrade_after_a_rollback_replaces_the_bad_slot():
    """The bad B is deleted before the new B is written, one generation above it."""
    names = ["talos-1-a.efi", "talos-2-b+0-3.efi"]
    steps = slots.plan_upgrade(names, "talos-1-a.efi", tries=1)
    assert steps[0] == Delete("EFI/Linux/talos-2-b+0-3.efi")
    assert apply(names, steps) == ["talos-1-a.efi", "talos-3-b+1.efi"]


def test_upgrade_is_refused_while_the_running_slot_is_on_trial_or_unknown():
    """Overwriting the other slot then would remove the only known-good fallback."""
    with pytest.raises(SlotError, match="still on trial"):
        slots.plan_upgrade(["talos-1-a.efi", "talos-2-b+2-1.efi"], "talos-2-b+3.efi")
    with pytest.raises(SlotError, match="did not start from an installed slot"):
        slots.plan_upgrade(["talos-1-a.efi"], None)
    with pytest.raises(SlotError, match="tries 0"):
        slots.plan_upgrade(["talos-1-a.efi"], "talos-1-a.efi", tries=0)


def test_rollback_makes_the_other_good_slot_first():
    """From B (good), A is renamed one generation above B; the next boot is A."""
    names = ["talos-1-a.efi", "talos-2-b.efi"]
    names = apply(names, slots.plan_rollback(names, "talos-2-b.efi"))
    assert sorted(names) == ["talos-2-b.efi", "talos-3-a.efi"]
    assert firmware_boot(names)[1] == "talos-3-a.efi"


def test_rollback_refuses_an_empty_or_bad_other_slot():
    """Nothing to go back to, or a slot that already failed its tries: a clear refusal."""
    with pytest.raises(SlotError, match="slot B is empty"):
        slots.plan_rollback(["talos-1-a.efi"], "talos-1-a.efi")
    with pytest.raises(SlotError, match="ran out of boot tries"):
        slots.plan_rollback(["talos-1-a.efi", "talos-2-b+0-3.efi"], "talos-1-a.efi")


def test_leftover_tmp_files_are_deleted_first():
    """A cut upgrade's .tmp (no entry for systemd-boot) is cleaned before the next plan."""
    steps = slots.plan_upgrade(["talos-1-a.efi", "talos-2-b+3.efi.tmp"], "talos-1-a.efi")
    assert steps[0] == Delete("EFI/Linux/talos-2-b+3.efi.tmp")


def test_trial_deadline_reboots_only_a_boot_on_trial_that_is_not_marked(tmp_path, monkeypatch):
    """Not on trial: nothing; marked within the deadline: nothing; else SIGTERM to PID 1."""
    from talos_init.boot import node

    kills = []
    monkeypatch.setattr(node.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    now = [0.0]

    def wait(s):
        now[0] += s

    marker = tmp_path / "boot-good"
    assert node.trial_deadline(60, marker, "talos-1-a.efi", wait, lambda: now[0]) == "not on trial"
    assert node.trial_deadline(60, marker, "talos-2-b+3.efi", wait, lambda: now[0]) == "rebooting"
    assert kills == [(1, node.signal.SIGTERM)] and now[0] >= 60
    marker.write_text("talos-2-b.efi\n")
    assert node.trial_deadline(60, marker, "talos-2-b+2-1.efi", wait,
                               lambda: now[0]) == "marked good"
    assert len(kills) == 1
