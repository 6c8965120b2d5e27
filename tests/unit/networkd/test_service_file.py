"""services/networkd.yaml passes the supervisor's validator and declares what networkd relies on."""

from __future__ import annotations

from pathlib import Path

from talos_init.service.definition import CAPABILITIES
from talos_init.service.loader import load_file

SERVICE = Path(__file__).resolve().parents[3] / "services/networkd.yaml"


def test_networkd_service_file():
    """Runs the module isolated, is ready by sd_notify, restarts always, keeps only its three capabilities."""
    d, errors = load_file(SERVICE)
    assert errors == [] and d is not None
    assert d.argv == ("/usr/bin/python3.11", "-I", "-m", "talos_init.networkd")
    assert d.readiness.kind == "notify" and d.restart == "always" and d.depends_on == ("udevd",)
    keep = {CAPABILITIES[c] for c in ("net_admin", "net_raw", "sys_admin")}
    assert d.confinement.kept_capabilities() == keep and d.confinement.no_new_privs
