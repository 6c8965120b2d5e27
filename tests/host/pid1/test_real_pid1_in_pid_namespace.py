"""Real PID 1 mode (kill -1, reboot(2)) inside a new pid namespace, where both stay confined.

In a child pid namespace the kernel turns reboot(2) into "kill the namespace's
init": exit by SIGHUP for a restart, SIGINT for power-off or halt, so the real
last step is observable without touching the host. The namespace also gets its
own mount namespace (private propagation, its own /proc) and cgroup namespace.
Unmounting is off in this test only: "/" here is the host's, and a read-only
remount would reach the host's superblocks. So are /dev/kmsg, the power
button (the host's kernel log and input devices) and hardening (sysctls are
mostly global: the host's).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .conftest import REPO

PID1 = r"""
import os, sys
assert os.getpid() == 1, "refusing: real PID 1 mode outside a fresh pid namespace"
sys.path.insert(0, sys.argv[1])
from talos_init.init import Init, InitConfig
from talos_init.mounts import EARLY_MOUNTS

# The checkout and its venv may live under /tmp (CI clones there): a fresh
# tmpfs on /tmp would hide them from this PID 1 and everything it starts.
# The payload squashfs is the image's, not the host's: no /usr/lib/talos here.
TABLE = tuple(m for m in EARLY_MOUNTS if m.target != "/tmp" and not m.image)

STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)")

class Workload:
    def __init__(self, ctx):
        self.ctx = ctx
    def start(self):
        pid = os.posix_spawn(sys.executable, [sys.executable, "-c", STUBBORN], dict(os.environ))
        self.ctx.reaper.watch(pid, lambda status: None)
    def stop_all(self, deadline, on_done):
        on_done()

Init(InitConfig(console=None, kmsg=None, json_log=True, unmount=False, power_button=False, harden=False, early_var=False, mount_table=TABLE,
                term_timeout=1, kill_timeout=10, supervisor_factory=Workload)).run()
"""

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")


def _child_of(pid: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = f.read().split()
        except FileNotFoundError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.02)
    raise AssertionError("unshare started no child")


class _Lines:
    """Lines from a pipe, read with os.read so select() sees all that is unread."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buf = b""
        self.lines: list[str] = []

    def until(self, predicate, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while not any(predicate(line) for line in self.lines):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return False
            data = os.read(self.fd, 65536)
            if not data:
                return False
            self.buf += data
            *done, self.buf = self.buf.split(b"\n")
            self.lines += [line.decode(errors="replace") for line in done]
        return True


@pytest.mark.parametrize(("signum", "action", "kernel_signal"), [
    (signal.SIGTERM, "reboot", signal.SIGHUP),
    (signal.SIGUSR2, "poweroff", signal.SIGINT),
])
def test_real_pid1_kills_everything_and_calls_reboot(signum, action, kernel_signal):
    """As PID 1, a signal runs the shutdown with kill(-1) and ends in reboot(2) with its command."""
    with subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "--mount-proc",
             "--cgroup", sys.executable, "-I", "-c", PID1, str(REPO)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        try:
            init = _child_of(proc.pid)
            # One pipe for both: a full stderr pipe nobody reads would stall PID 1's logging.
            err = _Lines(proc.stdout)
            assert err.until(lambda line: line == "ready"), (
                "the workload did not start; PID 1's last lines:\n" + "\n".join(err.lines[-20:]))
            assert err.until(lambda line: '"name":"services","state":"done"' in line), err.lines
            os.kill(init, signum)
            err.until(lambda line: False)  # to EOF: the namespace is gone
            returncode = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = err.lines
    events = [json.loads(line) for line in log if line.startswith("{")]
    text = "\n".join(log)
    assert returncode == -kernel_signal, text
    phases = [(e["name"], e["state"]) for e in events if e.get("event") == "phase"]
    assert ("mounts", "done") in phases and ("services", "done") in phases, text
    started = [name for name, state in phases if state == "start"]
    assert started[-7:] == ["shutdown", "shutdown.stop_services", "shutdown.terminate",
                            "shutdown.kill", "shutdown.sync", "shutdown.unmount",
                            f"shutdown.{action}"], text
    ends = {e["name"]: e for e in events if e.get("event") == "phase" and e["state"] != "start"}
    # The workload ignores SIGTERM: kill(-1, SIGTERM) leaves it, kill(-1, SIGKILL) ends it.
    assert ends["shutdown.terminate"]["state"] == "timeout", text
    assert ends["shutdown.kill"]["state"] == "done", text
    assert ("hardening", "done") in phases and any(
        e.get("event") == "hardening_skipped" for e in events), text
    # The host's disks and modules are not ours: the early /var phase leaves them alone.
    assert ("var", "done") in phases and any(e.get("event") == "var_early_skipped"
                                             and e["reason"] == "the disks are the host's"
                                             for e in events), text
    assert any(e.get("event") == "shutdown_final" and e["action"] == action for e in events)
