"""Real processes under a real Supervisor, all state in tmp_path; everything cleaned up."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from talos_init.events import EventLog
from talos_init.loop import Loop
from talos_init.paths import Paths
from talos_init.reaper import Reaper
from talos_init.service.definition import parse
from talos_init.service.supervisor import Supervisor

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)

PRELUDE = """\
import os, signal, socket, sys, time
from pathlib import Path
from talos_init.sdnotify import notify
"""


class Harness:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.paths = Paths(tmp / "root")
        self.paths.run.mkdir(parents=True)
        self.loop = Loop()
        self.reaper = Reaper(self.loop)
        self.events = EventLog()
        self.sup: Supervisor | None = None

    def program(self, name: str, body: str) -> list[str]:
        """argv running a small Python service program written to tmp."""
        path = self.tmp / f"{name}.py"
        path.write_text(PRELUDE + textwrap.dedent(body))
        return [sys.executable, str(path)]

    def define(self, id: str, body: str, **fields):
        d, errors = parse({"id": id, "argv": self.program(id, body), **fields})
        assert not errors, errors
        return d

    def config(self, data: dict) -> None:
        self.paths.effective_config.write_text(json.dumps(data))

    def supervise(self, definitions, **kw) -> Supervisor:
        kw.setdefault("cgroup_root", None)
        self.sup = Supervisor(self.loop, self.reaper, self.events, definitions, self.paths, **kw)
        self.sup.start()
        return self.sup

    def wait(self, predicate, timeout: float = 30.0) -> None:
        assert self.loop.run_until(predicate, timeout=timeout), "timed out waiting"

    def state(self, sid: str) -> str:
        return self.sup.core.status[sid].state.value

    def wait_state(self, sid: str, state: str, timeout: float = 30.0) -> None:
        ends = {state, "failed", "finished", "skipped"}  # no point waiting past an end
        self.loop.run_until(lambda: self.state(sid) in ends, timeout=timeout)
        ok = self.state(sid) == state
        assert ok, f"{sid} is {self.state(sid)} ({self.sup.core.status[sid].reason}), not {state}"

    def times(self, sid: str, state: str) -> list[float]:
        return [e.t for e in self.events.history("service", sid) if e.state == state]

    def sequence(self, sid: str) -> list[str]:
        return [e.state for e in self.events.history("service", sid)]

    def idle(self, seconds: float) -> None:
        """Run the loop for a while (to show that something does NOT happen)."""
        self.loop.run_until(lambda: False, timeout=seconds)

    def shutdown(self) -> None:
        if self.sup is not None:
            done = []
            self.sup.stop_all(self.loop.clock() + 20, lambda: done.append(True))
            self.loop.run_until(lambda: bool(done), timeout=30)
            self.sup.close()
        # Reap whatever is left of our children so nothing outlives the test.
        # A SIGKILLed process needs a moment to die; only then is a survivor a leak.
        self.loop.run_until(lambda: not _children(), timeout=5)
        left = {pid: _cmdline(pid) for pid in _children()}
        for pid in left:  # a test that failed half-way: do not leak its processes
            os.kill(pid, signal.SIGKILL)
        self.loop.run_until(lambda: not _children(), timeout=5)
        self.reaper.reap()
        assert not left, f"processes left behind: {left}"
        self.loop.close()


def _children() -> list[int]:
    """Live (non-zombie) children of this process."""
    me, out = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def harness(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("host tests need root")  # CI runs them as root
    # Orphaned grandchildren come back to us, as they would to PID 1.
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.shutdown()
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
