"""PID 1's early /var: mount an installed, clean /var before the service graph starts.

Every boot after the first, /var is the one partition named EPHEMERAL, and its
superblock says it is clean: nothing but the kernel is needed to mount it. PID
1 forks a child that loads the storage drivers (finit_module; a driver whose
probe hangs hangs the child, not PID 1) and waits for it at most ``DEADLINE``,
then looks for EPHEMERAL; only when there is one to mount does it load ext4
and overlay itself (no hardware behind them), mount it and write
``/run/talos/var.json`` (what containerd's start waits for). A first boot
thus pays for the drivers only (the var service would load them anyway). Whatever is not
plain (no disk, two, a check due, a refused mount, a slow child) it leaves to
the ``var`` service, untouched.

PID 1 waits instead of starting the graph beside the child: under TCG, the
graph's first cgroups (the kernel patching its text for the memory
controller's static keys) while the child probed drivers stalled the guest
for minutes in 2 of 4 first boots; the sync order never did.

Either way it writes its decision to ``/run/talos/var.early``, the ``var``
service's start condition, so the two never work on the disk at once.
"""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

from talos_init import kmodules
from talos_init.disk import drivers, ext4sb, installed, var
from talos_init.log import get_logger

log = get_logger("disk")

DEADLINE = 5.0  # seconds for the drivers and ext4; then the var service takes over
# Loaded with ext4 when PID 1 mounts /var, for containerd, whose start waits for
# /sys/module/overlay (its snapshotter) rather than for the kernel-modules one-shot, which
# loads it too (and br_netfilter, for machine-setup): that modprobe would be one more
# process start on containerd's path.
RUNTIME_MODULES = ("overlay",)


class EarlyVar:
    """One attempt, made by ``start``, which returns what it did (also kept in ``outcome``)."""

    def __init__(self, layout: var.Layout, marker: Path, deadline: float = DEADLINE):
        self.layout, self.marker, self.deadline = layout, marker, deadline
        self.outcome: str | None = None

    def start(self) -> str:
        """Load, look, mount; returns the outcome. Never raises (a failure is: left)."""
        try:
            if var.already_mounted(self.layout) is not None:
                return self._decide("left: /var is already mounted")
            if self.layout.load_drivers:
                why = self._load_in_child()
                if why is not None:
                    return self._decide(f"left: {why}")
            return self._mount_if_plain()
        except Exception as exc:  # noqa: BLE001 - PID 1: whatever it is, the var service retries
            return self._decide(f"left: {type(exc).__name__}: {exc}")

    def skip(self, why: str) -> str:
        """No attempt (host mode): the var service does it all."""
        return self._decide(f"left: {why}")

    def _load_in_child(self) -> str | None:
        """Fork the loader and wait for it; None when it loaded, else why not."""
        pid = os.fork()
        if pid == 0:
            _child(self.layout)  # never returns
        pidfd = os.pidfd_open(pid)
        try:
            done = select.select([pidfd], [], [], self.deadline)[0]
        finally:
            os.close(pidfd)
        if not done:  # left running; PID 1's reaper collects it whenever it ends
            return f"drivers still loading after {self.deadline:g}s"
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            return "the driver loader failed"
        return None

    def _mount_if_plain(self) -> str:
        found = installed.find(self.layout.sys_block, self.layout.disks)
        if len(found) != 1:
            return self._decide(f"left: {len(found)} installed EPHEMERAL partitions")
        part = found[0].partition
        sb = ext4sb.read(part)
        if sb is None or sb.label != var.LABEL:
            return self._decide(f"left: {part} holds no {var.LABEL} ext4")
        reason = ext4sb.fsck_reason(sb, time.time())
        if reason is not None:
            return self._decide(f"left: {part}: {reason}")
        if self.layout.load_drivers:
            started = time.monotonic()
            var.load_ext4(self.layout)
            _load_runtime_modules()
            log.info("var_modules_loaded", modules=[var.FSTYPE, *RUNTIME_MODULES],
                     seconds=round(time.monotonic() - started, 3))
        try:
            var.mount_disk(part, self.layout)
        except OSError as exc:  # checksums, features: e2fsck's call, in the var service
            return self._decide(f"left: mount {part}: {exc}")
        try:
            var.finish(self.layout, var.Result(
                "disk", device=found[0].disk, partition=part, action="check",
                fsck="clean (superblock)", found_by="label",
                notes=["mounted by PID 1 before the services started"]))
        except Exception as exc:  # noqa: BLE001 - mounted: the var service finishes the rest
            log.warning("var_early_finish_failed", error=f"{type(exc).__name__}: {exc}")
        log.info("var_installed", device=part, disk=found[0].disk, fsck="clean (superblock)",
                 by="PID 1")
        return self._decide("mounted")

    def _decide(self, outcome: str) -> str:
        self.outcome = outcome
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
        return outcome


def _load_runtime_modules() -> None:
    try:
        kmodules.load(RUNTIME_MODULES)
    except (OSError, LookupError) as exc:  # kernel-modules reports it; containerd waits
        log.warning("runtime_modules_not_loaded", modules=list(RUNTIME_MODULES), error=str(exc))


def _child(layout: var.Layout) -> None:
    """The forked loader: the storage drivers."""
    code = 0
    try:
        signal.set_wakeup_fd(-1)  # PID 1's handlers and wake-up pipe are not the child's
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                    signal.SIGUSR2, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        drivers.load_storage_drivers(layout.sys_bus)
    except BaseException:  # noqa: BLE001 - nothing may unwind into PID 1's code here
        code = 1
    os._exit(code)
