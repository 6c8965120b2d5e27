"""The example configs, validated by the userdata module, drive every node step without a gap."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest
import yaml

from talos_init.containerd.config import write_hosts
from talos_init.hardening import apply_machine
from talos_init.kubelet.prep import Layout as KubeletLayout
from talos_init.kubelet.prep import prepare, write_files
from talos_init.userdata.validate import parse

REPO = Path(__file__).resolve().parents[3]
QEMU_ADDRS = [ipaddress.ip_address(a) for a in ("127.0.0.1", "10.0.2.15")]


@pytest.mark.parametrize("name", ["worker.yaml", "controlplane.yaml"])
def test_example_config_drives_kubelet_containerd_and_sysctls(name, tmp_path):
    """Field names agree end to end: userdata's effective JSON feeds kubelet, containerd, sysctls."""
    result = parse((REPO / "configs" / name).read_text(), name)
    assert result.config is not None, [str(p) for p in result.problems]
    effective = result.config.effective

    layout = KubeletLayout(etc=tmp_path / "etc/kubernetes", var_lib=tmp_path / "kubelet")
    prepared = prepare(effective, layout, QEMU_ADDRS)
    write_files(prepared, layout)
    flags = dict(f[2:].split("=", 1) for f in prepared.argv_flags)
    assert flags["node-ip"] == "10.0.2.15"
    boot = yaml.safe_load(layout.bootstrap_kubeconfig.read_text())
    assert boot["clusters"][0]["cluster"]["server"] == effective["cluster"]["controlPlane"]["endpoint"]
    assert layout.ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")

    assert write_hosts(effective, tmp_path / "certs.d") == []

    proc_sys = tmp_path / "proc/sys"
    for name_ in effective["machine"].get("sysctls", {}):
        p = proc_sys / name_.replace(".", "/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("0\n")
    report = apply_machine(effective, proc_sys, tmp_path / "root")
    assert report.ok, report.errors
    for key, value in effective["machine"].get("sysctls", {}).items():
        assert (proc_sys / key.replace(".", "/")).read_text().strip() == value


def test_mirrors_and_labels_survive_validation(tmp_path):
    """machine.registries.mirrors and machine.nodeLabels reach containerd and the kubelet."""
    text = (REPO / "configs/worker.yaml").read_text().replace("    sysctls:", """    nodeLabels:
        zone: a
    registries:
        mirrors:
            docker.io:
                endpoints: [http://10.0.2.2:5000]
    sysctls:""", 1)
    result = parse(text, "worker.yaml")
    assert result.config is not None
    effective = result.config.effective
    write_hosts(effective, tmp_path / "certs.d")
    hosts = tomllib.loads((tmp_path / "certs.d/docker.io/hosts.toml").read_text())
    assert list(hosts["host"]) == ["http://10.0.2.2:5000"]
    effective["machine"]["kubelet"].pop("extraArgs", None)
    prepared = prepare(effective, KubeletLayout(etc=tmp_path), QEMU_ADDRS)
    assert "--node-labels=zone=a" in prepared.argv_flags
