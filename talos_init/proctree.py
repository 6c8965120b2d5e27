"""The process table as /proc shows it: who is left, and whose descendant.

Shutdown uses this to find what to signal. In host mode (a subreaper in a
test) only our own descendants may ever be touched, never the machine's.
"""

from __future__ import annotations

import os
from pathlib import Path

from talos_init.record import record

PF_KTHREAD = 0x00200000


@record(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str  # R, S, D, Z, T, ...
    kernel_thread: bool


def parse_stat(text: str) -> Proc:
    """One /proc/<pid>/stat line; comm may hold spaces and parentheses."""
    pid = int(text[:text.index(" ")])
    rest = text[text.rindex(")") + 2:].split()
    # After comm: state ppid pgrp session tty_nr tpgid flags ...
    return Proc(pid, int(rest[1]), rest[0], bool(int(rest[6]) & PF_KTHREAD))


def snapshot(proc: Path = Path("/proc")) -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return procs
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            procs[int(entry)] = parse_stat((proc / entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    return procs


def descendants(procs: dict[int, Proc], ancestor: int) -> set[int]:
    """Pids whose chain of parents reaches ``ancestor`` (not including it)."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    todo = list(children.get(ancestor, ()))
    while todo:
        pid = todo.pop()
        if pid not in found and pid != ancestor:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def killable(procs: dict[int, Proc], pids: set[int]) -> set[int]:
    """Those of ``pids`` a signal can still end: not zombies, not kernel threads."""
    return {pid for pid in pids
            if pid in procs and procs[pid].state != "Z" and not procs[pid].kernel_thread}
