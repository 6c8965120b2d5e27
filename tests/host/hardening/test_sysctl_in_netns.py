"""A real sysctl written and read back inside a fresh network namespace (never the host's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, pathlib
from talos_init.hardening import Report, apply_sysctls
r = Report()
apply_sysctls({"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"},
              pathlib.Path("/proc/sys"), r, source="test", missing_is_error=True)
print(json.dumps({"applied": r.applied, "errors": r.errors,
                  "read": pathlib.Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()}))
"""


def test_ip_forward_in_fresh_netns():
    """net.ipv4.ip_forward=1 is applied through /proc/sys in a new netns; the host's value is untouched."""
    host_path = Path("/proc/sys/net/ipv4/ip_forward")
    before = host_path.read_text()
    r = subprocess.run(["unshare", "--net", sys.executable, "-c", CHILD],
                       capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[3])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["errors"] == [] and out["read"] == "1"
    assert out["applied"]["net.ipv4.ip_forward"] == "1"
    assert host_path.read_text() == before
