"""Init reaps every orphan that is re-parented to it, and reports real exit statuses."""

from __future__ import annotations

import os
import signal
import sys
import time

from talos_init import proctree, syscalls
from talos_init.loop import Loop
from talos_init.reaper import Reaper


def _zombies_of(pid: int) -> list[int]:
    procs = proctree.snapshot()
    return [p.pid for p in procs.values() if p.ppid == pid and p.state == "Z"]


def test_init_reaps_100_orphaned_grandchildren(start_init):
    """100 grandchildren orphaned to init are all reaped: none is left, none is a zombie."""
    init = start_init("--supervisor", "tests.host.pid1.workload:orphans")
    init.wait_phase("services", "done")
    pids_file = init.root / "orphans.pids"
    deadline = time.monotonic() + 60
    while not (pids_file.exists() and pids_file.read_text()):
        assert time.monotonic() < deadline, "the orphan maker did not finish"
        time.sleep(0.05)
    orphans = [int(p) for p in pids_file.read_text().split()]
    assert len(set(orphans)) == 100
    while any(os.path.exists(f"/proc/{pid}") for pid in orphans) or _zombies_of(init.pid):
        assert time.monotonic() < deadline, f"left: {_zombies_of(init.pid)}"
        time.sleep(0.05)
    assert init.proc.poll() is None
    init.proc.send_signal(signal.SIGTERM)
    assert init.wait_exit() == 0


def _subreaper_child(n: int, w: int) -> None:
    syscalls.set_child_subreaper()
    loop = Loop()
    reaper = Reaper(loop)
    for _ in range(n):
        child = os.fork()
        if child == 0:
            if os.fork() == 0:
                time.sleep(0.1)
                os._exit(7)
            os._exit(0)
    ok = loop.run_until(lambda: reaper.orphans_reaped >= 2 * n, timeout=60)
    zombies = _zombies_of(os.getpid())
    os.write(w, f"{int(ok)} {reaper.orphans_reaped} {len(zombies)}".encode())


def test_reaper_in_a_subreaper_collects_orphans():
    """A subreaper's Reaper collects 100 children and their 100 orphaned grandchildren."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _subreaper_child(100, w)
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 100).decode().split()
    os.close(r)
    os.waitpid(pid, 0)
    assert out == ["1", "200", "0"]


def test_child_killed_by_sigsegv_is_reported_as_signal_11():
    """A real interpreter that dies of SIGSEGV is reported as signal 11, never as exit 0."""
    loop = Loop()
    reaper = Reaper(loop)
    got = []
    code = "import os, signal; signal.signal(signal.SIGSEGV, signal.SIG_DFL); " \
           "os.kill(os.getpid(), signal.SIGSEGV)"
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code], dict(os.environ))
    reaper.watch(pid, got.append)
    assert loop.run_until(lambda: got, timeout=30)
    assert got[0].signal == 11 and got[0].code is None and not got[0].success
    loop.close()
