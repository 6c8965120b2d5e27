"""Supervisors that init loads in host tests (``--supervisor tests.host.pid1.workload:NAME``).

They implement the ``talos_init.init.Supervisor`` protocol with real
processes, standing in for the service graph that lives in another branch.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from talos_init.init import InitContext
from talos_init.reaper import ExitStatus

# A service that leaks a child which ignores SIGTERM, then sleeps. The leaked
# child outlives the service: shutdown's terminate step cannot end it, kill must.
LEAKY_SERVICE = """
import os, signal, sys, time
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(sys.argv[1] + "/stubborn.pid", "w").write(str(os.getpid()))
    while True:
        time.sleep(60)
open(sys.argv[1] + "/service.pid", "w").write(str(os.getpid()))
while True:
    time.sleep(60)
"""

# Forks N children that each fork a grandchild and exit at once: N orphans
# reparented to init (the subreaper), which all exit a moment later.
ORPHAN_MAKER = """
import os, sys, time
n, out = int(sys.argv[1]), sys.argv[2]
pids = []
for _ in range(n):
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(0.2)  # outlive the parent: become init's orphan
            os._exit(0)
        os.write(w, str(grandchild).encode())
        os._exit(0)
    os.close(w)
    pids.append(int(os.read(r, 32)))
    os.close(r)
    os.waitpid(child, 0)
open(out, "w").write(" ".join(map(str, pids)))
"""


def _spawn(ctx: InitContext, code: str, *args: str,
           on_exit: Callable[[ExitStatus], None] | None = None) -> int:
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code, *args], dict(os.environ))
    ctx.reaper.watch(pid, on_exit or (lambda status: None))
    return pid


class Leaky:
    """One service that leaks a SIGTERM-ignoring child; stop_all stops only the service."""

    def __init__(self, ctx: InitContext):
        self.ctx = ctx
        self.pid = 0
        self.exited: ExitStatus | None = None

    def start(self) -> None:
        def exited(status: ExitStatus) -> None:
            self.exited = status
            if self._on_done:
                self._on_done()

        self._on_done: Callable[[], None] | None = None
        self.pid = _spawn(self.ctx, LEAKY_SERVICE, str(self.ctx.paths.root), on_exit=exited)

    def stop_all(self, deadline: float, on_done: Callable[[], None]) -> None:
        if self.exited is not None:
            on_done()
            return
        self._on_done = on_done
        os.kill(self.pid, signal.SIGTERM)


class Orphans:
    """Makes 100 orphaned grandchildren at start; nothing to stop."""

    def __init__(self, ctx: InitContext):
        self.ctx = ctx

    def start(self) -> None:
        _spawn(self.ctx, ORPHAN_MAKER, "100", str(self.ctx.paths.root / "orphans.pids"))

    def stop_all(self, deadline: float, on_done: Callable[[], None]) -> None:
        on_done()


def leaky(ctx: InitContext) -> Leaky:
    return Leaky(ctx)


def orphans(ctx: InitContext) -> Orphans:
    return Orphans(ctx)


def broken(ctx: InitContext) -> Leaky:
    raise RuntimeError("the service graph could not be loaded (test)")


class Hung(Leaky):
    """A supervisor whose stop never finishes: shutdown must go on at the deadline."""

    def stop_all(self, deadline: float, on_done: Callable[[], None]) -> None:
        pass


def hung(ctx: InitContext) -> Hung:
    return Hung(ctx)
