"""The A/B boot-entry state machine: pure decisions over the names in ``EFI/Linux``.

No I/O here (``talos_init.boot.espio`` runs the plans). Each plan is a list of
steps, each one crash-safe on its own; any prefix of a plan leaves an ESP whose
first entry in systemd-boot's order is a complete, previously bootable image or
the new one (tests/host/boot: a power cut after every step).

An entry's life (names under EFI/Linux; docs/for-devs/boot.md has the diagram):

    upgrade:   write talos-<g+1>-<other>+N.efi.tmp, then rename it to .efi (the switch)
    each boot: systemd-boot renames +L-D to +(L-1)-(D+1) before starting it
    good:      our boot renames its own entry to talos-<g>-<slot>.efi (no counter)
    bad:       +0-D sorts last: the firmware's next boot is the previous good entry
    rollback:  the other (good) slot renamed to generation g+1, so it is first again
"""

from __future__ import annotations

from dataclasses import dataclass

from talos_init.boot import esp

DEFAULT_TRIES = 3  # systemd's kernel-install default (/etc/kernel/tries)
MAX_TRIES = 9


class SlotError(ValueError):
    """A plan that must not run; the message says why and what to do."""


@dataclass(frozen=True)
class Entry:
    generation: int
    slot: str
    left: int | None  # tries left; None: no counter (a good entry)
    done: int

    @property
    def name(self) -> str:
        return esp.entry_name(self.generation, self.slot, self.left, self.done)

    @property
    def bad(self) -> bool:
        return self.left == 0

    @property
    def on_trial(self) -> bool:
        return self.left is not None and self.left > 0

    @property
    def state(self) -> str:
        return "bad" if self.bad else "trial" if self.on_trial else "good"


@dataclass(frozen=True)
class Write:
    """Write ``source`` ("image", "bootloader" or bytes) to ``path`` and fsync it."""
    path: str
    source: str | bytes


@dataclass(frozen=True)
class Rename:
    """Rename within one directory, then fsync the directory."""
    old: str
    new: str


@dataclass(frozen=True)
class Delete:
    path: str


Step = Write | Rename | Delete


def linux(name: str) -> str:
    return f"{esp.LINUX_DIR}/{name}"


def entries(names: list[str]) -> list[Entry]:
    """Our entries among the file names of EFI/Linux (anything else is ignored)."""
    out = []
    for name in names:
        parsed = esp.parse_name(name)
        if parsed:
            out.append(Entry(*parsed))
    return out


def boot_order(found: list[Entry]) -> list[Entry]:
    """systemd-boot's order for our entries: no tries left last, then newest generation."""
    return sorted(found, key=lambda e: (e.bad, -e.generation, e.slot))


def chosen(found: list[Entry]) -> Entry | None:
    """The entry the firmware's boot manager starts (loader.conf names no default)."""
    order = boot_order(found)
    return order[0] if order else None


def running(found: list[Entry], selected: str | None) -> Entry | None:
    """Our entry for LoaderEntrySelected (the name it had when chosen: its counter since
    moved on, so match by generation and slot)."""
    parsed = esp.parse_name(selected) if selected else None
    if parsed is None:
        return None
    for e in found:
        if (e.generation, e.slot) == parsed[:2]:
            return e
    return None


def _stale(names: list[str]) -> list[Step]:
    # A .tmp left by a cut upgrade is no entry (systemd-boot wants .efi): drop it first.
    return [Delete(linux(n)) for n in sorted(names) if n.endswith(".tmp")]


def plan_install(names: list[str]) -> list[Step]:
    """A fresh ESP: slot A first, loader.conf, the boot loader last (what makes it bootable)."""
    a = esp.entry_name(1, "a")
    return [*_stale(names),
            Write(linux(a) + ".tmp", "image"), Rename(linux(a) + ".tmp", linux(a)),
            Write(esp.LOADER_CONF + ".tmp", esp.LOADER_CONF_TEXT),
            Rename(esp.LOADER_CONF + ".tmp", esp.LOADER_CONF),
            Write(esp.BOOTLOADER + ".tmp", "bootloader"),
            Rename(esp.BOOTLOADER + ".tmp", esp.BOOTLOADER)]


def plan_upgrade(names: list[str], selected: str | None, tries: int = DEFAULT_TRIES) -> list[Step]:
    """The new image into the slot not running, with ``tries`` boot attempts, first in order."""
    if not 1 <= tries <= MAX_TRIES:
        raise SlotError(f"tries {tries}: must be 1 to {MAX_TRIES}")
    found = entries(names)
    cur = running(found, selected)
    if cur is None:
        raise SlotError("this boot did not start from an installed slot (LoaderEntrySelected "
                        f"{selected!r}): install first, then upgrade")
    if cur.on_trial:
        raise SlotError(f"slot {cur.slot.upper()} is still on trial ({cur.name}): it is marked "
                        "good once PID 1, apid and containerd are ready; upgrade after that")
    other = "b" if cur.slot == "a" else "a"
    new = esp.entry_name(max(e.generation for e in found) + 1, other, tries)
    return [*_stale(names),
            *[Delete(linux(e.name)) for e in found if e.slot == other],
            Write(linux(new) + ".tmp", "image"),
            Rename(linux(new) + ".tmp", linux(new))]


def plan_mark_good(names: list[str], selected: str | None) -> list[Step]:
    """Drop the running entry's counter; nothing when it has none (or we run from elsewhere)."""
    cur = running(entries(names), selected)
    if cur is None or cur.left is None:
        return []
    good = Entry(cur.generation, cur.slot, None, 0)
    return [Rename(linux(cur.name), linux(good.name))]


def plan_rollback(names: list[str], selected: str | None) -> list[Step]:
    """Make the other slot first again (by generation); it must be a complete, good entry."""
    found = entries(names)
    cur = running(found, selected)
    if cur is None:
        raise SlotError("this boot did not start from an installed slot: nothing to roll back to")
    others = [e for e in found if e.slot != cur.slot]
    if not others:
        raise SlotError(f"slot {'B' if cur.slot == 'a' else 'A'} is empty: nothing to roll back to")
    other = others[0]
    if other.bad:
        raise SlotError(f"slot {other.slot.upper()} ran out of boot tries ({other.name}): it "
                        "would not boot; upgrade it with a working image instead")
    top = max(e.generation for e in found)
    if other.generation == top and not cur.on_trial:
        return []  # already first
    promoted = Entry(top + 1, other.slot, None, 0)
    return [Rename(linux(other.name), linux(promoted.name))]


def status(names: list[str], selected: str | None) -> dict:
    """What `osctl version` shows: the running slot, each slot's entry, a rollback if any."""
    found = entries(names)
    cur = running(found, selected)
    slots = {e.slot.upper(): {"entry": e.name, "state": e.state, "generation": e.generation}
             for e in found}
    rolled_back = None
    if cur is not None:
        newer_bad = [e for e in found if e.slot != cur.slot and e.bad and e.generation > cur.generation]
        if newer_bad:
            rolled_back = (f"slot {newer_bad[0].slot.upper()} ({newer_bad[0].name}) ran out of "
                           f"boot tries; the firmware went back to slot {cur.slot.upper()}")
    return {"running": cur.slot.upper() if cur else None, "slots": slots,
            "rolled_back": rolled_back}
