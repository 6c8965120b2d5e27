"""A Talos 1.15 multi-document worker and its single-document v1alpha1 twin drive the same node.

Both configs go through the node's real write path (``apply_config``: validate, then the
atomic config.yaml/config.json writes) into their own root; then every consumer of the
effective config runs on each root's config.json: the kubelet preparation (flags,
kubelet.yaml, bootstrap kubeconfig, CA), containerd's hosts.toml, networkd's plan and
the machine sysctls (written into a /proc/sys stand-in). Everything must match, and
must carry what the documents asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from talos_init.containerd.config import write_hosts
from talos_init.hardening import apply_machine
from talos_init.kubelet.prep import Layout, prepare
from talos_init.networkd.model import from_config
from talos_init.osctl import genconfig
from talos_init.paths import Paths
from talos_init.userdata.apply import apply_config
from tests import talos115

pytestmark = pytest.mark.host


def _tree(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def _node(root: Path, text: str) -> dict:
    """What one node derives from ``text``: effective config and every consumer's output."""
    result = apply_config(text.encode(), Paths(root))
    assert result.errors == [], [p.format() for p in result.errors]
    effective = json.loads(Paths(root).effective_config.read_text())
    layout = Layout(etc=root / "etc/kubernetes", var_lib=root / "var/lib/kubelet")
    kubelet = prepare(effective, layout)
    notes = write_hosts(effective, root / "etc/containerd/certs.d")
    proc_sys = root / "proc/sys"
    name = talos115.SYSCTL[0]
    sysctl = proc_sys / name.replace(".", "/")
    sysctl.parent.mkdir(parents=True)
    sysctl.write_text("7200\n")
    report = apply_machine(effective, proc_sys, root)
    return {
        "effective": effective,
        "flags": [f.replace(str(root), "ROOT") for f in kubelet.argv_flags],
        "kubelet_files": {str(p.relative_to(root)): (c.replace(str(root).encode(), b"ROOT"), m)
                          for p, (c, m) in kubelet.files.items()},
        "kubelet_notes": kubelet.notes,
        "hosts": _tree(root / "etc/containerd/certs.d"),
        "hosts_notes": notes,
        "network": repr(from_config(effective)),
        "sysctl": sysctl.read_text(),
        "sysctl_errors": report.errors,
        "unsupported": sorted(p.path for p in result.unsupported),
    }


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gen")
    genconfig.generate("talos115", "https://10.0.2.15:6443", out, talos_version=(1, 13))
    return yaml.safe_load((out / "worker.yaml").read_text())


def test_multi_and_single_document_give_the_same_node(worker, tmp_path):
    multi = _node(tmp_path / "multi", talos115.multi_document(worker))
    single = _node(tmp_path / "single", talos115.single_document(worker))
    for key in ("effective", "flags", "kubelet_files", "kubelet_notes", "hosts", "hosts_notes",
                "network", "sysctl", "sysctl_errors"):
        assert multi[key] == single[key], key
    # Only where each layout names the one thing not acted on (the kubelet image).
    assert multi["unsupported"] == ["KubeletConfig.image", "debug"]
    assert single["unsupported"] == ["debug", "machine.kubelet.image"]

    # And it is what the documents asked for, as each consumer sees it.
    flags = multi["flags"]
    assert "--v=3" in flags and f"--hostname-override={talos115.HOSTNAME}" in flags
    assert "--node-labels=talos115.example.org/layout=multidoc" in flags
    kubelet_yaml = yaml.safe_load(multi["kubelet_files"]["etc/kubernetes/kubelet.yaml"][0])
    assert kubelet_yaml["maxPods"] == 42 and kubelet_yaml["serverTLSBootstrap"] is True
    assert kubelet_yaml["clusterDomain"] == talos115.DNS_DOMAIN
    assert kubelet_yaml["clusterDNS"] == ["10.112.0.10"]
    boot = yaml.safe_load(multi["kubelet_files"]["etc/kubernetes/bootstrap-kubeconfig"][0])
    assert boot["clusters"][0]["name"] == talos115.CLUSTER_NAME
    assert boot["clusters"][0]["cluster"]["server"] == "https://10.0.2.15:6443"
    assert multi["kubelet_files"]["etc/kubernetes/pki/ca.crt"][0].startswith(b"-----BEGIN CERT")
    hosts = multi["hosts"]["docker.io/hosts.toml"].decode()
    assert f'[host."{talos115.MIRROR[1]}"]' in hosts
    assert multi["sysctl"].strip() == talos115.SYSCTL[1]
    network = multi["network"]
    assert "192.168.150.10/24" in network and talos115.HOSTNAME in network
    assert "10.0.2.2" in network
