"""Driving a booted node from the host with osctl, as a user would: one place for every e2e module."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from tests.e2e.qemu import VM

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT = 600  # TCG on two shared cores


def gen_cluster(out: Path, name: str, endpoint: str = "https://10.0.2.15:6443") -> Path:
    """`osctl gen config` into ``out``: worker.yaml (with machine.ca.key, so apid starts) and
    osctlconfig. The single-document layout (Talos 1.13), which these tests edit as one mapping."""
    r = subprocess.run([sys.executable, "-m", "talos_init.osctl", "gen", "config", name, endpoint,
                        "--output-dir", str(out), "--force", "--talos-version", "1.13"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return out


def osctl(config: Path, port: int, *args: str, timeout: float = 120,
          stdin: IO[bytes] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "talos_init.osctl", "--osctlconfig", str(config),
                           "-e", f"127.0.0.1:{port}", *args], stdin=stdin,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def ok(config: Path, port: int, *args: str, timeout: float = 120) -> str:
    """osctl's stdout; its stderr in the assertion when it fails."""
    r = osctl(config, port, *args, timeout=timeout)
    assert r.returncode == 0, f"osctl {' '.join(args)}: {r.stderr}"
    return r.stdout


def wait_api(config: Path, port: int, timeout: float = BOOT_TIMEOUT, vm: VM | None = None) -> None:
    """Poll `osctl version` until the node answers (apid up, TLS accepted)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = osctl(config, port, "version", timeout=60)
        if last.returncode == 0:
            return
        if vm is not None and vm.exited:
            raise AssertionError("QEMU exited before the API answered")
        time.sleep(2)
    raise AssertionError(f"the node's API did not answer within {timeout}s: {last and last.stderr}")


def services(config: Path, port: int) -> dict[str, dict]:
    return {s["id"]: s for s in json.loads(ok(config, port, "-o", "json", "services"))}


def wait_state(config: Path, port: int, sid: str, states: set[str], timeout: float = 300) -> dict:
    """The service's entry once it is in one of ``states``; its last output in the failure."""
    deadline = time.monotonic() + timeout
    svc = None
    while time.monotonic() < deadline:
        svc = services(config, port).get(sid)
        if svc and svc["state"] in states:
            return svc
        time.sleep(1)
    logs = osctl(config, port, "logs", sid, "--tail", "30")
    raise AssertionError(f"{sid} not in {states} within {timeout}s: {svc}\n"
                         f"its last output:\n{logs.stdout}")


def events(config: Path, port: int) -> list[dict]:
    lines = ok(config, port, "-o", "json", "events").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
