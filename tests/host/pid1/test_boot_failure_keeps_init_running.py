"""An exception inside a boot phase is logged and survived: init counts down, or waits."""

from __future__ import annotations

import signal
import time


def alive_at(init, t: float) -> dict:
    """The first log line init writes at or after ``t`` (its own clock), made by poking it
    with SIGHUP, a signal it logs and ignores; fails if it exits first."""
    while True:
        seen = len(init.lines)
        init.proc.send_signal(signal.SIGHUP)
        line = init.wait_for(lambda e, seen=seen: e.get("event") == "signal_ignored"
                             and init.lines.index(e) >= seen)
        if line["t"] >= t:
            return line
        time.sleep(0.1)  # pacing the pokes, not waiting for a result


def rebooting_before(init, marker: dict) -> list[dict]:
    """Countdown lines and shutdown phases logged before ``marker``."""
    return [e for e in init.lines[:init.lines.index(marker)]
            if e.get("event") == "boot_failed_rebooting"
            or (e.get("event") == "phase" and e.get("name") == "shutdown")]


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
    waiting = init.wait_phase("failure", "waiting")
    # Past the countdown it would have used, by its own clock: still up, no shutdown started.
    assert not rebooting_before(init, alive_at(init, waiting["t"] + 1))
    init.proc.send_signal(signal.SIGUSR2)
    assert init.wait_exit() == 0
    assert [e["result"] for e in init.lines if e.get("event") == "init_exit"] == ["poweroff"]


def test_halt_if_failed_waits_like_panic_0(start_init):
    """talos.halt_if_failed also turns the countdown into a wait."""
    init = start_init("--supervisor", "tests.host.pid1.workload:broken",
                      "--failure-countdown", "0.5", cmdline="talos.halt_if_failed")
    waiting = init.wait_phase("failure", "waiting")
    assert not rebooting_before(init, alive_at(init, waiting["t"] + 0.5))
    init.proc.send_signal(signal.SIGTERM)
    assert init.wait_exit() == 0
