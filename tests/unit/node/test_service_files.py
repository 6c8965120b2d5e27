"""The node's service files load with the supervisor's own validator and say what they mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from talos_init.service.definition import load_file

SERVICES = Path(__file__).resolve().parents[3] / "services"


@pytest.mark.parametrize("name", ["var", "machine-setup", "kubelet"])
def test_service_file_is_valid(name):
    """Each file passes the supervisor's validation with no error."""
    definition, errors = load_file(SERVICES / f"{name}.yaml")
    assert errors == [] and definition is not None and definition.id == name


def test_one_shots_and_ordering():
    """var and machine-setup are one-shots in order; kubelet waits for containerd, network, setup."""
    var, _ = load_file(SERVICES / "var.yaml")
    setup, _ = load_file(SERVICES / "machine-setup.yaml")
    kubelet, _ = load_file(SERVICES / "kubelet.yaml")
    assert var.one_shot and setup.one_shot and "var" in setup.depends_on
    assert {"udevd", "userdata"} <= set(var.depends_on)
    assert {"containerd", "networkd", "userdata", "machine-setup"} <= set(kubelet.depends_on)
    assert kubelet.readiness.probe is not None
    assert kubelet.readiness.probe.target == "http://127.0.0.1:10248/healthz"
    assert [str(c) for c in kubelet.skip_unless] == ["file_exists /usr/local/bin/kubelet"]
    assert kubelet.restart == "always"
