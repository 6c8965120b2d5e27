"""The node's service files load with the supervisor's own validator and say what they mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from talos_init.service.loader import load_file

SERVICES = Path(__file__).resolve().parents[3] / "services"


@pytest.mark.parametrize("name", ["var", "machine-setup", "kubelet", "containerd",
                                  "kernel-modules"])
def test_service_file_is_valid(name):
    """Each file passes the supervisor's validation with no error."""
    definition, errors = load_file(SERVICES / f"{name}.yaml")
    assert errors == [] and definition is not None and definition.id == name


def test_one_shots_and_ordering():
    """var needs nothing (it waits for the config itself, only on a first boot); containerd
    needs only its modules and a mounted /var (the report PID 1 or var writes), not the config
    or the network; machine-setup and the kubelet wait for the config; kubelet waits for
    containerd, network, setup."""
    var, _ = load_file(SERVICES / "var.yaml")
    setup, _ = load_file(SERVICES / "machine-setup.yaml")
    kubelet, _ = load_file(SERVICES / "kubelet.yaml")
    assert var.one_shot and setup.one_shot and "var" in setup.depends_on
    containerd, _ = load_file(SERVICES / "containerd.yaml")
    assert not var.depends_on
    assert set(containerd.depends_on) == set()
    assert [str(c) for c in containerd.conditions] == ["file_exists /run/talos/var.json",
                                                       "file_exists /sys/module/overlay"]
    assert containerd.argv[0] == "/usr/bin/containerd"  # no launcher: the config is static
    assert {"userdata", "var", "kernel-modules"} <= set(setup.depends_on)
    assert {"containerd", "networkd", "userdata", "machine-setup"} <= set(kubelet.depends_on)
    assert kubelet.readiness.probe is not None
    assert kubelet.readiness.probe.target == "http://127.0.0.1:10248/healthz"
    assert [str(c) for c in kubelet.skip_unless] == ["file_exists /usr/local/bin/kubelet"]
    assert kubelet.restart == "always"


def test_whole_graph_is_valid_and_containerd_never_waits_for_the_config():
    """The shipped directory loads (no unknown dependency, no cycle), and nothing containerd
    transitively depends on is userdata, networkd or udevd."""
    from talos_init.service.loader import load_directory

    defs = {d.id: d for d in load_directory(SERVICES)}
    seen, todo = set(), ["containerd"]
    while todo:
        for dep in defs[todo.pop()].depends_on:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    assert seen == set()
