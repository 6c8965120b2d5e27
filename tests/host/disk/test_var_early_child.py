"""PID 1's early /var with its forked driver loader, driven by a real loop and reaper: the
mount happens from the loop once the drivers and ext4 are in; a driver that hangs costs PID 1
nothing but the deadline. The loaders are replaced (this host's kernel is not the image's);
the fork, the pipe, the reaper, the disk and the mount are real."""

from __future__ import annotations

import os
import time

import pytest

from talos_init import kmodules, mounts, syscalls
from talos_init.disk import drivers
from talos_init.disk.early import EarlyVar
from talos_init.disk.install import setup
from talos_init.loop import Loop
from talos_init.reaper import Reaper


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.close()


def _installed(loopdisk, layout):
    setup({"version": "v1alpha1", "machine": {"install": {"disk": loopdisk.devnode}}}, layout)
    syscalls.umount2(layout.var)
    layout.report.unlink()  # a new boot: /run is fresh
    layout.disks = (os.path.basename(loopdisk.devnode),)
    layout.load_drivers = True  # the loaders below stand in for finit_module
    return layout


def test_mounts_from_the_loop_after_the_child_loaded(tmp_path, loop, loopdisk, layout,
                                                     monkeypatch):
    loaded = tmp_path / "loaded"
    monkeypatch.setattr(drivers, "load_storage_drivers",
                        lambda sys_bus: loaded.write_text(str(os.getpid())))
    monkeypatch.setattr(kmodules, "load", lambda names: time.sleep(0.3))  # ext4 comes last
    decided = []
    early = EarlyVar(loop, Reaper(loop), _installed(loopdisk, layout), tmp_path / "var.early",
                     decided.append)
    early.start()
    assert early.outcome is None  # start() only forked: PID 1 goes on with its phases
    assert loop.run_until(lambda: decided, timeout=30)
    assert decided == ["mounted"] and mounts.mounted_at(layout.var) == "ext4"
    assert int(loaded.read_text()) != os.getpid()  # the drivers loaded in the child
    assert (tmp_path / "var.early").read_text() == "mounted\n" and layout.report.exists()


def test_a_hanging_driver_costs_only_the_deadline(tmp_path, loop, loopdisk, layout,
                                                  monkeypatch):
    child = tmp_path / "child.pid"

    def hang(sys_bus):
        child.write_text(str(os.getpid()))
        time.sleep(60)

    monkeypatch.setattr(drivers, "load_storage_drivers", hang)
    monkeypatch.setattr(kmodules, "load", lambda names: None)
    decided = []
    early = EarlyVar(loop, Reaper(loop), _installed(loopdisk, layout), tmp_path / "var.early",
                     decided.append, deadline=0.5)
    early.start()
    assert loop.run_until(lambda: decided, timeout=30)
    assert decided == ["left: drivers or ext4 still loading after 0.5s"]
    assert mounts.mounted_at(layout.var) is None and not layout.report.exists()
    for _ in range(300):  # the child may not have reached the driver yet on a busy machine
        if child.exists() and child.read_text():
            break
        time.sleep(0.05)
    os.kill(int(child.read_text()), 9)
    assert loop.run_until(lambda: early._child_done, timeout=30)  # reaped, ignored: decided


def test_a_child_that_dies_before_the_drivers_is_a_decision(tmp_path, loop, loopdisk, layout,
                                                            monkeypatch):
    def boom(sys_bus):
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(drivers, "load_storage_drivers", boom)
    monkeypatch.setattr(kmodules, "load", lambda names: None)
    decided = []
    EarlyVar(loop, Reaper(loop), _installed(loopdisk, layout), tmp_path / "var.early",
             decided.append).start()
    assert loop.run_until(lambda: decided, timeout=30)
    assert decided == ["left: the storage drivers did not load"]
    assert mounts.mounted_at(layout.var) is None
