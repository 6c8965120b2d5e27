"""PID 1's early /var with its forked driver loader: PID 1 mounts once the child loaded the
drivers, ext4 and overlay; a driver that hangs costs it the deadline, no more. The loaders are
replaced (this host's kernel is not the image's); the fork, the wait, the disk and the mount
are real."""

from __future__ import annotations

import os
import time

from talos_init import kmodules, mounts, syscalls
from talos_init.disk import drivers
from talos_init.disk.early import EarlyVar
from talos_init.disk.install import setup


def _installed(loopdisk, layout):
    setup({"version": "v1alpha1", "machine": {"install": {"disk": loopdisk.devnode}}}, layout)
    syscalls.umount2(layout.var)
    layout.report.unlink()  # a new boot: /run is fresh
    layout.disks = (os.path.basename(loopdisk.devnode),)
    layout.load_drivers = True  # the loaders below stand in for finit_module
    return layout


def test_child_loads_the_drivers_then_pid1_ext4_overlay_and_mounts(tmp_path, loopdisk, layout,
                                                                   monkeypatch):
    log = tmp_path / "loads"

    def record(what: str) -> None:
        with log.open("a") as f:
            f.write(f"{what} {os.getpid()}\n")

    monkeypatch.setattr(drivers, "load_storage_drivers", lambda sys_bus: record("storage"))
    monkeypatch.setattr(kmodules, "load", lambda names: record(" ".join(names)))
    early = EarlyVar(_installed(loopdisk, layout), tmp_path / "var.early")
    assert early.start() == "mounted" and early.outcome == "mounted"
    assert mounts.mounted_at(layout.var) == "ext4" and layout.report.exists()
    assert (tmp_path / "var.early").read_text() == "mounted\n"
    loads = [line.split() for line in log.read_text().splitlines()]
    assert [what for what, _ in loads] == ["storage", "ext4", "overlay"]  # one at a time
    assert int(loads[0][1]) != os.getpid()  # the drivers (hardware probes) in the child
    assert {int(pid) for _, pid in loads[1:]} == {os.getpid()}  # the rest once a disk is there


def test_no_disk_no_ext4(tmp_path, loopdisk, layout, monkeypatch):
    """A first boot (nothing installed) pays for the drivers only."""
    loads = []
    monkeypatch.setattr(drivers, "load_storage_drivers", lambda sys_bus: None)
    monkeypatch.setattr(kmodules, "load", loads.append)
    layout.disks, layout.load_drivers = (os.path.basename(loopdisk.devnode),), True
    early = EarlyVar(layout, tmp_path / "var.early")
    assert early.start() == "left: 0 installed EPHEMERAL partitions" and loads == []


def test_a_hanging_driver_costs_only_the_deadline(tmp_path, loopdisk, layout, monkeypatch):
    child = tmp_path / "child.pid"

    def hang(sys_bus):
        child.write_text(str(os.getpid()))
        time.sleep(60)

    monkeypatch.setattr(drivers, "load_storage_drivers", hang)
    monkeypatch.setattr(kmodules, "load", lambda names: None)
    early = EarlyVar(_installed(loopdisk, layout), tmp_path / "var.early", deadline=0.5)
    assert early.start() == "left: drivers still loading after 0.5s"
    assert mounts.mounted_at(layout.var) is None and not layout.report.exists()
    assert (tmp_path / "var.early").read_text().startswith("left: ")
    for _ in range(300):  # the child may not have reached the driver yet on a busy machine
        if child.exists() and child.read_text():
            break
        time.sleep(0.05)
    pid = int(child.read_text())
    assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still loading: it was not waited for
    os.kill(pid, 9)
    os.waitpid(pid, 0)  # PID 1's reaper's job; here the test's


def test_a_loader_that_fails_is_a_decision(tmp_path, loopdisk, layout, monkeypatch):
    def boom(sys_bus):
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(drivers, "load_storage_drivers", boom)
    monkeypatch.setattr(kmodules, "load", lambda names: None)
    early = EarlyVar(_installed(loopdisk, layout), tmp_path / "var.early")
    assert early.start() == "left: the driver loader failed"
    assert mounts.mounted_at(layout.var) is None
