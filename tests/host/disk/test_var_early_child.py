"""PID 1's early /var loads the storage drivers in a forked child it waits for at most a
deadline: a driver whose init hangs must not hang PID 1. The loaders are replaced (this host's
kernel is not the image's); the fork, the wait and the deadline are real."""

from __future__ import annotations

import os
import time

from talos_init import kmodules
from talos_init.disk import drivers, var


def test_child_loads_and_parent_waits(tmp_path, monkeypatch, layout):
    marks = tmp_path / "marks"
    marks.mkdir()

    def storage(sys_bus):
        (marks / f"storage-{os.getpid()}").touch()
        return []

    monkeypatch.setattr(drivers, "load_storage_drivers", storage)
    monkeypatch.setattr(kmodules, "load", lambda names: (marks / f"{names[0]}-{os.getpid()}").touch())
    assert var._load_drivers_in_child(layout, deadline=30) is True
    made = sorted(p.name.split("-")[0] for p in marks.iterdir())
    assert made == ["ext4", "storage"]
    assert all(int(p.name.split("-")[1]) != os.getpid() for p in marks.iterdir())  # in the child


def test_a_hanging_driver_does_not_hang_the_caller(tmp_path, monkeypatch, layout):
    child = tmp_path / "child.pid"

    def hang(sys_bus):
        child.write_text(str(os.getpid()))
        time.sleep(30)

    monkeypatch.setattr(drivers, "load_storage_drivers", hang)
    monkeypatch.setattr(kmodules, "load", lambda names: None)
    assert var._load_drivers_in_child(layout, deadline=0.3) is False
    pid, _ = os.waitpid(-1, os.WNOHANG)
    assert pid == 0  # returned while the child still loads: it was not waited for
    for _ in range(300):  # the child may not have got to the driver yet on a busy machine
        if child.exists() and child.read_text():
            break
        time.sleep(0.05)
    os.kill(int(child.read_text()), 9)
    os.waitpid(-1, 0)  # the child, left for PID 1's reaper; here the test reaps it
