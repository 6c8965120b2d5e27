"""PID 1's early /var with the kernel module loader (talos_init.preload): PID 1 mounts once the
loader's child has loaded the drivers, ext4 and overlay; a driver that hangs costs it the
deadline, no more. The loaders' kernel calls are replaced (this host's kernel is not the
image's); the fork, the pipe, the wait, the disk and the mount are real."""

from __future__ import annotations

import os
import threading
import time

import pytest

from talos_init import kmodules, mounts, preload, syscalls
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


def _recorder(tmp_path, monkeypatch):
    """Replace the kernel calls; return a reader of (what, pid) in the order they ran."""
    log = tmp_path / "loads"

    def record(what: str) -> None:
        with log.open("a") as f:
            f.write(f"{what} {os.getpid()}\n")

    monkeypatch.setattr(drivers, "load_storage_drivers", lambda sys_bus: record("storage"))
    monkeypatch.setattr(kmodules, "load", lambda names: record("+".join(names)))
    return lambda: [tuple(line.rsplit(" ", 1)) for line in log.read_text().splitlines()]


def test_the_loader_loads_drivers_ext4_and_overlay_then_pid1_mounts(tmp_path, loopdisk, layout,
                                                                   monkeypatch):
    loads = _recorder(tmp_path, monkeypatch)
    early = EarlyVar(_installed(loopdisk, layout), tmp_path / "var.early")
    assert early.start() == "mounted" and early.outcome == "mounted"
    assert mounts.mounted_at(layout.var) == "ext4" and layout.report.exists()
    assert (tmp_path / "var.early").read_text() == "mounted\n"
    assert sorted(what for what, _ in loads()) == ["ext4+overlay", "storage"]
    pids = {int(pid) for _, pid in loads()}
    assert len(pids) == 1 and os.getpid() not in pids  # all in the one child
    assert early.loader is not None and early.loader.wait("more", 30) is None
    assert early.loader.ended and early.loader.pid == 0  # nothing after var: it exited


def test_pid1s_loader_started_before_is_the_one_waited_for(tmp_path, loopdisk, layout,
                                                           monkeypatch):
    """The boot's loader (forked in talos_init.__main__) also loads the payload's modules first;
    the early /var waits for it and forks no other."""
    loads = _recorder(tmp_path, monkeypatch)
    layout = _installed(loopdisk, layout)
    loader = preload.start(preload.boot_stages(("loop max_loop=1", "squashfs"), layout.sys_bus))
    assert loader.wait("payload", 30)["error"] is None
    early = EarlyVar(layout, tmp_path / "var.early", loader=loader)
    assert early.start() == "mounted" and early.loader is loader
    what = [what for what, _ in loads()]
    assert what[0] == "loop max_loop=1+squashfs" and sorted(what[1:]) == ["ext4+overlay", "storage"]
    assert len({pid for _, pid in loads()}) == 1


def test_a_first_boot_loads_ext4_all_the_same(tmp_path, loopdisk, layout, monkeypatch):
    """Nothing installed: nothing mounted, and ext4 is loaded for the var service's mount after
    it formats the disk."""
    loads = _recorder(tmp_path, monkeypatch)
    layout.disks, layout.load_drivers = (os.path.basename(loopdisk.devnode),), True
    early = EarlyVar(layout, tmp_path / "var.early")
    assert early.start() == "left: 0 installed EPHEMERAL partitions"
    assert sorted(what for what, _ in loads()) == ["ext4+overlay", "storage"]
    assert mounts.mounted_at(layout.var) is None


def test_ext4_loads_while_the_storage_drivers_probe_and_var_waits_for_both(tmp_path, monkeypatch):
    """The storage drivers' probes (slow under TCG) run in a thread beside ext4's load; the var
    stage ends only once both are done, so no probe runs on into PID 1's graph."""
    ext4_loading = threading.Event()
    done = []

    def storage(sys_bus):
        # Loaded one after the other, ext4 would never start while this waits: it times out.
        assert ext4_loading.wait(10), "ext4 did not load beside the storage drivers"
        done.append("storage")
        return ["pci:storage"]

    def load(names):
        ext4_loading.set()
        return dict.fromkeys(names, "loaded")

    monkeypatch.setattr(drivers, "load_storage_drivers", storage)
    monkeypatch.setattr(kmodules, "load", load)
    report = preload.boot_stages((), str(tmp_path))[0][1]()
    assert report == {"storage": ["pci:storage"],
                      "modules": {"ext4": "loaded", "overlay": "loaded"}}
    assert done == ["storage"]


def test_a_failing_ext4_load_still_waits_for_the_probes(tmp_path, monkeypatch):
    ext4_failed = threading.Event()
    done = []

    def storage(sys_bus):
        ext4_failed.wait(10)
        time.sleep(0.2)  # a probe still running after ext4's load failed
        done.append("storage")

    def load(names):
        ext4_failed.set()
        raise OSError(2, "No such file or directory", "ext4.ko")

    monkeypatch.setattr(drivers, "load_storage_drivers", storage)
    monkeypatch.setattr(kmodules, "load", load)
    stage = preload.boot_stages((), str(tmp_path))[0][1]
    with pytest.raises(OSError, match="ext4.ko"):
        stage()
    assert done == ["storage"]  # joined before the error left the stage


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
    assert early.start() == "left: the module loader failed: RuntimeError: driver exploded"
    assert mounts.mounted_at(layout.var) is None
