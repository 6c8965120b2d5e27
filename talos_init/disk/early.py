"""PID 1's early /var: mount an installed, clean /var while the service graph starts.

Every boot after the first, /var is the one partition named EPHEMERAL, and its
superblock says it is clean: nothing but the kernel is needed to mount it. PID
1 forks a child that loads the storage drivers and ext4 (finit_module; a
module whose init hangs hangs the child, not PID 1) and goes on with its boot
phases. From its loop it then looks for EPHEMERAL once the drivers are in,
mounts it once ext4 is, and writes ``/run/talos/var.json`` (what containerd's
start waits for). Whatever is not plain (no disk, two, a check due, a refused
mount, drivers slower than the deadline) it leaves to the ``var`` service,
untouched.

Either way it writes its decision to ``/run/talos/var.early``, the ``var``
service's start condition, so the two never work on the disk at once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from talos_init import kmodules
from talos_init.disk import drivers, ext4sb, installed, var
from talos_init.log import get_logger

log = get_logger("disk")

DEADLINE = 5.0  # seconds for the drivers and ext4; then the var service takes over
# Loaded by the same child for containerd, whose start waits for /sys/module/overlay (its
# snapshotter) rather than for the kernel-modules one-shot, which loads it too (and
# br_netfilter, for machine-setup): else that modprobe, queued behind these loads in the
# kernel, is what containerd waits for.
RUNTIME_MODULES = ("overlay",)


class EarlyVar:
    """One attempt; ``decided(outcome)`` is called once, from the loop (or from ``start``)."""

    def __init__(self, loop, reaper, layout: var.Layout, marker: Path,
                 decided: Callable[[str], None] = lambda outcome: None,
                 deadline: float = DEADLINE):
        self.loop, self.reaper, self.layout, self.marker = loop, reaper, layout, marker
        self._decided, self.deadline = decided, deadline
        self.outcome: str | None = None
        self._pid: int | None = None
        self._ready_fd: int | None = None
        self._child_done = False
        self._found: installed.Candidate | None = None
        self._timer = None

    def start(self) -> None:
        """Fork the loader and return; never raises (a failure is a decision: left)."""
        try:
            if var.already_mounted(self.layout) is not None:
                return self._decide("left: /var is already mounted")
            if not self.layout.load_drivers:
                self._child_done = True
                return self._drivers_in()
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                _child(self.layout, ready_r, ready_w)  # never returns
            os.close(ready_w)
            self._pid, self._ready_fd = pid, ready_r
            self.reaper.watch(pid, self._on_exit)
            self.loop.add_reader(ready_r, self._on_ready)
            self._timer = self.loop.call_later(self.deadline, self._on_deadline)
        except Exception as exc:  # noqa: BLE001 - PID 1: whatever it is, the var service retries
            self._decide(f"left: {type(exc).__name__}: {exc}")

    # -- loop callbacks -----------------------------------------------------------------

    def _on_ready(self) -> None:
        fd, self._ready_fd = self._ready_fd, None
        if fd is None:
            return
        self.loop.remove_reader(fd)
        try:
            byte = os.read(fd, 1)
        finally:
            os.close(fd)
        if self.outcome is not None:
            return
        if not byte:  # EOF before the byte: the child failed before the drivers were in
            return self._decide("left: the storage drivers did not load")
        self._drivers_in()

    def _on_exit(self, status: object) -> None:
        self._child_done = True
        if self.outcome is None and self._found is not None:
            self._mount()

    def _on_deadline(self) -> None:
        if self.outcome is None:
            self._decide(f"left: drivers or ext4 still loading after {self.deadline:g}s")

    # -- steps --------------------------------------------------------------------------

    def _drivers_in(self) -> None:
        try:
            found = installed.find(self.layout.sys_block, self.layout.disks)
            if len(found) != 1:
                return self._decide(f"left: {len(found)} installed EPHEMERAL partitions")
            sb = ext4sb.read(found[0].partition)
            if sb is None or sb.label != var.LABEL:
                return self._decide(f"left: {found[0].partition} holds no {var.LABEL} ext4")
            reason = ext4sb.fsck_reason(sb, time.time())
            if reason is not None:
                return self._decide(f"left: {found[0].partition}: {reason}")
        except Exception as exc:  # noqa: BLE001
            return self._decide(f"left: {type(exc).__name__}: {exc}")
        self._found = found[0]
        if self._child_done:  # ext4 is in too
            self._mount()

    def _mount(self) -> None:
        found = self._found
        assert found is not None
        try:
            var.mount_disk(found.partition, self.layout)
        except OSError as exc:  # checksums, features: e2fsck's call, in the var service
            return self._decide(f"left: mount {found.partition}: {exc}")
        try:
            var.finish(self.layout, var.Result(
                "disk", device=found.disk, partition=found.partition, action="check",
                fsck="clean (superblock)", found_by="label",
                notes=["mounted by PID 1 while the services started"]))
        except Exception as exc:  # noqa: BLE001 - mounted: the var service finishes the rest
            log.warning("var_early_finish_failed", error=f"{type(exc).__name__}: {exc}")
        log.info("var_installed", device=found.partition, disk=found.disk,
                 fsck="clean (superblock)", by="PID 1")
        self._decide("mounted")

    def _decide(self, outcome: str) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        if self._timer is not None:
            self._timer.cancel()
        if outcome != "mounted":
            log.info("var_early_skipped", reason=outcome.removeprefix("left: "),
                     effect="the var service sets /var up")
        try:
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.marker.with_suffix(".tmp")
            tmp.write_text(outcome + "\n")
            os.replace(tmp, self.marker)
        except OSError as exc:  # the var service would wait for ever: say so loudly
            log.error("var_early_marker_unwritten", path=str(self.marker), error=str(exc))
        self._decided(outcome)


def _load_runtime_modules() -> None:
    try:
        kmodules.load(RUNTIME_MODULES)
    except (OSError, LookupError) as exc:  # kernel-modules reports it; containerd waits
        log.warning("runtime_modules_not_loaded", modules=list(RUNTIME_MODULES), error=str(exc))


def _child(layout: var.Layout, ready_r: int, ready_w: int) -> None:
    """The forked loader: storage drivers (then one byte on the pipe), ext4, the runtime's
    modules."""
    code = 0
    try:
        os.close(ready_r)
        signal.set_wakeup_fd(-1)  # PID 1's handlers and wake-up pipe are not the child's
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                    signal.SIGUSR2, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        # One module at a time: concurrent loads stalled TCG guests for minutes (RCU stalls
        # with a CPU in an int3 text-poke trap; performance.md, run 9).
        drivers.load_storage_drivers(layout.sys_bus)
        os.write(ready_w, b"d")
        var.load_ext4(layout)
        _load_runtime_modules()
    except BaseException:  # noqa: BLE001 - nothing may unwind into PID 1's code here
        code = 1
    os._exit(code)
