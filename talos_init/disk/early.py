"""PID 1's early /var: mount an installed, clean /var before the service graph starts.

Every boot after the first, /var is the one partition named EPHEMERAL, and its
superblock says it is clean: nothing but the kernel is needed to mount it. The
kernel module loader (``talos_init.preload``, forked before PID 1's imports)
loads the storage drivers, ext4 and overlay; PID 1 waits for it at most
``DEADLINE`` (a driver whose probe hangs hangs the loader, not PID 1), then
looks for EPHEMERAL, mounts it and writes ``/run/talos/var.json`` (what
containerd's start waits for). Whatever is not plain (no disk, two, a check
due, a refused mount, a slow loader) it leaves to the ``var`` service,
untouched. A first boot loads ext4 all the same: the var service mounts one
once it has formatted the disk.

PID 1 waits instead of starting the graph beside the loader: under TCG, the
graph's first cgroups (the kernel patching its text for the memory
controller's static keys) while a child probed drivers stalled the guest
for minutes in 2 of 4 first boots; the sync order never did.

Either way it writes its decision to ``/run/talos/var.early``, the ``var``
service's start condition, so the two never work on the disk at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from talos_init import preload
from talos_init.disk import ext4sb, installed, var
from talos_init.log import get_logger

log = get_logger("disk")

DEADLINE = 5.0  # seconds for the drivers, ext4 and overlay; then the var service takes over


class EarlyVar:
    """One attempt, made by ``start``, which returns what it did (also kept in ``outcome``)."""

    def __init__(self, layout: var.Layout, marker: Path, deadline: float = DEADLINE,
                 loader: preload.Loader | None = None):
        self.layout, self.marker, self.deadline = layout, marker, deadline
        self.loader = loader  # None: ``start`` forks one for the drivers, ext4 and overlay
        self.outcome: str | None = None

    def start(self) -> str:
        """Load, look, mount; returns the outcome. Never raises (a failure is: left)."""
        try:
            if var.already_mounted(self.layout) is not None:
                return self._decide("left: /var is already mounted")
            if self.layout.load_drivers:
                why = self._wait_for_modules()
                if why is not None:
                    return self._decide(f"left: {why}")
            return self._mount_if_plain()
        except Exception as exc:  # noqa: BLE001 - PID 1: whatever it is, the var service retries
            return self._decide(f"left: {type(exc).__name__}: {exc}")

    def skip(self, why: str) -> str:
        """No attempt (host mode): the var service does it all."""
        return self._decide(f"left: {why}")

    def _wait_for_modules(self) -> str | None:
        """None once the loader has loaded the drivers and ext4, else why not."""
        if self.loader is None:
            self.loader = preload.start(preload.boot_stages((), self.layout.sys_bus))
        report = self.loader.wait("var", self.deadline)
        if report is None:
            return ("the module loader ended early" if self.loader.ended
                    else f"drivers still loading after {self.deadline:g}s")
        return f"the module loader failed: {report['error']}" if report["error"] else None

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
