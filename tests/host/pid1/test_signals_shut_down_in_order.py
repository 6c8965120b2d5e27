"""A signal sent to init (host mode, a real child process) runs the one shutdown sequence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

SHUTDOWN_STEPS = ["shutdown.stop_services", "shutdown.terminate", "shutdown.kill",
                  "shutdown.sync", "shutdown.unmount"]


def _started(phases):
    return [name for name, state in phases if state == "start"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(("signum", "action"), [
    (signal.SIGTERM, "reboot"), (signal.SIGINT, "reboot"),
    (signal.SIGUSR2, "poweroff"), (signal.SIGUSR1, "halt"),
])
def test_signal_runs_shutdown_steps_in_order(start_init, signum, action):
    """Each busybox signal runs every shutdown step in order and ends with its action."""
    init = start_init()
    init.wait_phase("services", "done")
    init.proc.send_signal(signum)
    assert init.wait_exit() == 0, init.log_text()
    started = _started(init.phases())
    assert started[-7:] == ["shutdown", *SHUTDOWN_STEPS, f"shutdown.{action}"], init.log_text()
    assert ("shutdown", "done") in init.phases()
    exit_line = [e for e in init.lines if e.get("event") == "init_exit"]
    assert exit_line and exit_line[0]["result"] == action
    request = [e for e in init.lines if e.get("name") == "shutdown" and e["state"] == "start"]
    assert request[0]["reason"] == f"signal {signal.Signals(signum).name}"


def test_every_step_is_logged_with_its_duration(start_init):
    """Each shutdown step ends with an event that carries its duration in seconds."""
    init = start_init()
    init.wait_phase("services", "done")
    init.proc.send_signal(signal.SIGTERM)
    assert init.wait_exit() == 0
    ends = {e["name"]: e for e in init.lines if e.get("event") == "phase"
            and e["name"].startswith("shutdown.") and e["state"] != "start"}
    assert set(ends) == {*SHUTDOWN_STEPS, "shutdown.reboot"}
    assert all(isinstance(e["duration"], float) and e["duration"] >= 0 for e in ends.values())


def test_services_stopped_then_leftovers_terminated_then_killed(start_init, tmp_path):
    """The supervisor stops its service, and a leaked child that ignores SIGTERM is SIGKILLed."""
    init = start_init("--supervisor", "tests.host.pid1.workload:leaky", "--term-timeout", "1")
    init.wait_phase("services", "done")
    stubborn_file = init.root / "stubborn.pid"
    deadline = time.monotonic() + 30
    while not (stubborn_file.exists() and stubborn_file.read_text()):
        assert time.monotonic() < deadline, "the workload never started"
        time.sleep(0.05)
    stubborn = int(stubborn_file.read_text())
    service = int((init.root / "service.pid").read_text())
    # A process that is not init's descendant: shutdown must leave it alone.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        init.proc.send_signal(signal.SIGTERM)
        assert init.wait_exit() == 0, init.log_text()
        ends = {e["name"]: e for e in init.lines if e.get("event") == "phase"
                and e["state"] != "start"}
        assert ends["shutdown.stop_services"]["state"] == "done"
        assert ends["shutdown.terminate"]["state"] == "timeout"
        assert ends["shutdown.terminate"]["left"] == [stubborn]
        assert ends["shutdown.kill"]["state"] == "done"
        assert not _alive(stubborn) and not _alive(service)
        assert bystander.poll() is None, "shutdown signalled a process that is not its own"
    finally:
        bystander.kill()
        bystander.wait()
        for pid in (stubborn, service):  # only if the shutdown under test failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_second_signal_during_shutdown_is_ignored(start_init):
    """A signal arriving while the shutdown runs does not start a second one."""
    init = start_init("--supervisor", "tests.host.pid1.workload:leaky", "--term-timeout", "2")
    init.wait_phase("services", "done")
    init.proc.send_signal(signal.SIGUSR2)
    init.wait_phase("shutdown.terminate", "start")
    init.proc.send_signal(signal.SIGTERM)
    assert init.wait_exit() == 0
    assert [e["result"] for e in init.lines if e.get("event") == "init_exit"] == ["poweroff"]
    assert any(e.get("event") == "shutdown_already_running" and e["ignored"] == "reboot"
               for e in init.lines)


def test_other_signals_are_not_fatal(start_init):
    """SIGHUP, SIGQUIT and SIGTSTP neither end nor stop init; it still answers SIGTERM."""
    init = start_init()
    init.wait_phase("services", "done")
    for signum in (signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP, signal.SIGALRM):
        name = signal.Signals(signum).name
        init.proc.send_signal(signum)
        init.wait_for(lambda e, n=name: e.get("event") == "signal_ignored" and e["signal"] == n)
    assert init.proc.poll() is None
    init.proc.send_signal(signal.SIGTERM)
    assert init.wait_exit() == 0
    assert os.path.exists(init.root)


def test_supervisor_that_never_finishes_stopping_is_bounded(start_init):
    """If stop_all never calls on_done, shutdown goes on at its deadline and still kills all."""
    init = start_init("--supervisor", "tests.host.pid1.workload:hung", "--stop-timeout", "0.5",
                      "--term-timeout", "0.5")
    init.wait_phase("services", "done")
    deadline = time.monotonic() + 30
    while not (init.root / "stubborn.pid").exists() or not (init.root / "stubborn.pid").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stubborn = int((init.root / "stubborn.pid").read_text())
    init.proc.send_signal(signal.SIGTERM)
    try:
        assert init.wait_exit() == 0, init.log_text()
        ends = {e["name"]: e for e in init.lines if e.get("event") == "phase"
                and e["state"] != "start"}
        assert ends["shutdown.stop_services"]["state"] == "timeout"
        assert ends["shutdown.kill"]["state"] == "done"
        assert not _alive(stubborn)
    finally:
        if _alive(stubborn):
            os.kill(stubborn, signal.SIGKILL)
