"""networkd under the real Supervisor: READY=1 only with a lease, dependents after it, SIGTERM releases."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from talos_init.service.definition import parse
from tests.host.networkd.conftest import ROOT
from tests.host.service.conftest import harness  # noqa: F401  (the supervisor's own test harness)

pytestmark = pytest.mark.host


def test_dependent_starts_after_the_lease_and_stop_releases_it(harness, topo, dnsmasq):  # noqa: F811
    """The supervisor sees networkd ready only once it has a lease; stopping it sends DHCPRELEASE."""
    h = harness
    root = h.tmp / "netroot"
    (root / "proc").mkdir(parents=True)
    (root / "proc/cmdline").write_text("talos.hostname=supervised\n")
    networkd, errors = parse(
        {
            "id": "networkd",
            "readiness": {"notify": True},
            "restart": "always",
            # The service's own argv, run inside the test's namespaces (never the host's network).
            "argv": [
                shutil.which("unshare"),
                "--uts",
                "ip",
                "netns",
                "exec",
                topo.node,
                sys.executable,
                "-I",
                "-m",
                "talos_init.networkd",
                "--root",
                str(root),
                "--link-timeout",
                "5",
            ],
            "working_directory": str(ROOT),
            "stop": {"signal": "SIGTERM", "timeout": 10},
        }
    )
    assert not errors, errors
    seen = h.tmp / "seen.json"
    app = h.define(
        "app",
        f"""
        Path({str(seen)!r}).write_text(Path({str(root / "run/talos/networkd/status.json")!r}).read_text())
        """,
        depends_on=["networkd"],
        readiness={"exit": True},
        restart="never",
    )
    sup = h.supervise([networkd, app])
    h.wait_state("app", "finished", timeout=90)

    assert h.times("networkd", "ready")[0] < h.times("app", "starting")[0]
    status = json.loads(seen.read_text())
    [lease] = status["leases"]
    assert lease["link"] == "eth0" and lease["address"] in topo.addresses("eth0")
    row = next(s for s in sup.services() if s["id"] == "networkd")
    assert row["state"] == "ready"

    sup.stop_service("networkd")  # SIGTERM, as at shutdown
    h.wait_state("networkd", "finished", timeout=30)
    assert "stopping" in h.sequence("networkd")
    assert sup.core.status["networkd"].restarts == 0
    h.wait(lambda: "DHCPRELEASE(s0)" in dnsmasq.log(), timeout=10)
    assert lease["address"] not in topo.addresses("eth0")
