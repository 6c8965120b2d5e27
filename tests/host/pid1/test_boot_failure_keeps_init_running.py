"""An exception inside a boot phase is logged and survived: init counts down, or waits."""

from __future__ import annotations

import signal
import time


def test_failed_phase_counts_down_then_reboots(start_init):
    """A missing /proc/cmdline fails its phase; init skips the rest, counts down, then reboots."""
    init = start_init("--failure-countdown", "2", cmdline=None)
    failed = init.wait_phase("cmdline", "failed")
    assert "FileNotFoundError" in failed["reason"]
    assert init.wait_exit() == 0, init.log_text()
    phases = init.phases()
    started = [name for name, state in phases if state == "start"]
    assert "logging" not in started and "services" not in started
    countdown = [e["seconds_left"] for e in init.lines if e.get("event") == "boot_failed_rebooting"]
    assert countdown == [2.0, 1.0]
    assert phases.index(("failure", "countdown")) < phases.index(("shutdown", "start"))
    request = next(e for e in init.lines if e.get("name") == "shutdown" and e["state"] == "start")
    assert request["reason"] == "boot phase cmdline failed"
    assert [e["result"] for e in init.lines if e.get("event") == "init_exit"] == ["reboot"]
    traceback = next(e for e in init.lines if e.get("event") == "phase_failed")
    assert "Traceback" in traceback["exception"] and "cmdline" in traceback["exception"]


def test_failed_phase_with_panic_0_waits_and_still_serves(start_init):
    """With panic=0 a failed phase leaves init waiting, alive, and still obeying SIGUSR2."""
    init = start_init("--supervisor", "tests.host.pid1.workload:broken",
                      "--failure-countdown", "1", cmdline="panic=0")
    failed = init.wait_phase("graph", "failed")
    assert "the service graph could not be loaded" in failed["reason"]
    init.wait_phase("failure", "waiting")
    # Past the countdown it would have used: still up, no shutdown started.
    time.sleep(1.5)
    assert init.proc.poll() is None
    assert ("shutdown", "start") not in init.phases()
    init.proc.send_signal(signal.SIGUSR2)
    assert init.wait_exit() == 0
    assert [e["result"] for e in init.lines if e.get("event") == "init_exit"] == ["poweroff"]


def test_halt_if_failed_waits_like_panic_0(start_init):
    """talos.halt_if_failed also turns the countdown into a wait."""
    init = start_init("--supervisor", "tests.host.pid1.workload:broken",
                      "--failure-countdown", "0.5", cmdline="talos.halt_if_failed")
    init.wait_phase("failure", "waiting")
    time.sleep(1.0)
    assert init.proc.poll() is None
    init.proc.send_signal(signal.SIGTERM)
    assert init.wait_exit() == 0
