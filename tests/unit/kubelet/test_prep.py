"""Kubelet files and flags prepared from a worker's effective machine config."""

from __future__ import annotations

import base64
import ipaddress
import json
import stat
from pathlib import Path

import pytest
import yaml

from talos_init.kubelet.prep import (
    KubeletPrepError,
    Layout,
    cluster_dns,
    merge_flags,
    pick_node_ips,
    prepare,
    write_files,
)

FIXTURE = Path(__file__).with_name("worker-effective.json")
NODE_ADDRS = [ipaddress.ip_address(a) for a in ("127.0.0.1", "10.0.2.15", "fd00::15", "::1")]


@pytest.fixture
def config():
    return json.loads(FIXTURE.read_text())


def _flags(prepared) -> dict[str, str]:
    return dict(f[2:].split("=", 1) for f in prepared.argv_flags)


def test_files_are_written_with_modes(config, tmp_path):
    """kubelet.yaml, the bootstrap kubeconfig (0600) and the cluster CA land under /etc/kubernetes."""
    layout = Layout(etc=tmp_path / "etc/kubernetes", var_lib=tmp_path / "var/lib/kubelet")
    prepared = prepare(config, layout, NODE_ADDRS)
    write_files(prepared, layout)
    kc = yaml.safe_load(layout.config.read_text())
    assert kc["kind"] == "KubeletConfiguration" and kc["cgroupDriver"] == "cgroupfs"
    assert kc["authentication"]["webhook"]["enabled"] is True
    assert kc["authentication"]["anonymous"]["enabled"] is False
    assert kc["authorization"]["mode"] == "Webhook"
    assert kc["clusterDNS"] == ["10.96.0.10"] and kc["clusterDomain"] == "cluster.local"
    assert kc["staticPodPath"] == str(layout.manifests) and kc["rotateCertificates"] is True
    assert kc["healthzBindAddress"] == "127.0.0.1" and kc["healthzPort"] == 10248
    boot = yaml.safe_load(layout.bootstrap_kubeconfig.read_text())
    assert boot["clusters"][0]["cluster"]["server"] == "https://10.0.2.15:6443"
    assert boot["users"][0]["user"]["token"] == config["cluster"]["token"]
    assert stat.S_IMODE(layout.bootstrap_kubeconfig.stat().st_mode) == 0o600
    assert layout.ca.read_bytes() == base64.b64decode(config["cluster"]["ca"]["crt"])
    assert layout.manifests.is_dir() and layout.var_lib.is_dir()


def test_flags_merge_ours_and_extra_args(config, tmp_path):
    """Our wiring flags, node IP from validSubnets, labels, hostname, then the user's extraArgs."""
    layout = Layout(etc=tmp_path)
    flags = _flags(prepare(config, layout, NODE_ADDRS))
    assert "container-runtime-endpoint" not in flags  # in kubelet.yaml (the flag is deprecated)
    assert flags["config"] == str(tmp_path / "kubelet.yaml")
    assert flags["bootstrap-kubeconfig"] == str(tmp_path / "bootstrap-kubeconfig")
    assert flags["node-ip"] == "10.0.2.15"
    assert flags["hostname-override"] == "worker-1"
    assert flags["node-labels"] == "topology.kubernetes.io/zone=lab-a"
    assert flags["rotate-server-certificates"] == "true" and flags["max-pods"] == "50"


def test_protected_flag_override_is_an_error_naming_it():
    """extraArgs may not replace the flags that wire the kubelet to containerd and its files."""
    with pytest.raises(KubeletPrepError, match=r"--container-runtime-endpoint, --kubeconfig cannot be"):
        merge_flags({"config": "/a"}, {"kubeconfig": "/x", "container-runtime-endpoint": "unix:///x"})


def test_user_value_wins_for_other_flags_with_a_note():
    """A user node-ip replaces ours and the override is reported."""
    flags, notes = merge_flags({"config": "/a", "node-ip": "10.0.2.15"},
                               {"node-ip": "192.168.1.5", "feature-gates": ["A=true", "B=false"]})
    assert flags == ["--config=/a", "--node-ip=192.168.1.5", "--feature-gates=A=true",
                     "--feature-gates=B=false"]
    assert notes == ["machine.kubelet.extraArgs.node-ip='192.168.1.5' overrides talos-init's "
                     "--node-ip=10.0.2.15"]


def test_node_ip_selection_follows_valid_subnets():
    """The first address per family inside an included subnet and outside every exclusion."""
    addrs = [ipaddress.ip_address(a) for a in ("10.0.2.15", "10.0.2.16", "fd00::1", "fd00::2")]
    assert [str(a) for a in pick_node_ips(["10.0.0.0/8", "!10.0.2.15", "fd00::/64"], addrs)] == \
        ["10.0.2.16", "fd00::1"]
    assert pick_node_ips(["192.168.0.0/16"], addrs) == []


def test_no_matching_node_ip_is_an_error(config, tmp_path):
    """validSubnets no address matches yet fails the prep (the service restarts and retries)."""
    with pytest.raises(KubeletPrepError, match=r"validSubnets \['10.0.2.0/24'\]: no address"):
        prepare(config, Layout(etc=tmp_path), [ipaddress.ip_address("127.0.0.1")])


def test_cluster_dns_from_config():
    """clusterDNS is machine.kubelet.clusterDNS, else the 10th address of each service subnet."""
    assert cluster_dns({"cluster": {"network": {"serviceSubnets": ["10.96.0.0/12", "fd00:10:96::/112"]}}}) \
        == ["10.96.0.10", "fd00:10:96::a"]
    assert cluster_dns({"machine": {"kubelet": {"clusterDNS": ["169.254.2.53"]}}}) == ["169.254.2.53"]


def test_missing_cluster_fields_are_named(config, tmp_path):
    """A config without the control plane endpoint names the missing field."""
    del config["cluster"]["controlPlane"]
    with pytest.raises(KubeletPrepError, match="cluster.controlPlane is missing"):
        prepare(config, Layout(etc=tmp_path), NODE_ADDRS)


def test_extra_mounts_are_reported_not_silently_dropped(config, tmp_path):
    """A bind from one path to another cannot apply to a host kubelet: a note says so."""
    config["machine"]["kubelet"]["extraMounts"] = [
        {"source": "/var/mnt/a", "destination": "/var/mnt/b", "type": "bind"},
        {"source": "/var/local", "destination": "/var/local", "type": "bind"}]
    notes = prepare(config, Layout(etc=tmp_path), NODE_ADDRS).notes
    assert any("extraMounts[0]: /var/mnt/a -> /var/mnt/b is not applied" in n for n in notes)
    assert not any("extraMounts[1]" in n for n in notes)


def test_underscore_spellings_are_the_same_flags_to_the_kubelet():
    """The kubelet's flag library reads cert_dir as cert-dir: protected either way, merged as one."""
    with pytest.raises(KubeletPrepError, match=r"--cert-dir, --container-runtime-endpoint cannot"):
        merge_flags({"config": "/a"}, {"cert_dir": "/x", "--container_runtime_endpoint": "unix:///x"})
    flags, notes = merge_flags({"config": "/a", "node-ip": "10.0.2.15"}, {"node_ip": "192.168.1.5"})
    assert flags == ["--config=/a", "--node-ip=192.168.1.5"]
    assert notes == ["machine.kubelet.extraArgs.node_ip='192.168.1.5' overrides talos-init's "
                     "--node-ip=10.0.2.15"]


def test_extra_config_is_merged_into_the_kubelet_configuration(config, tmp_path):
    """machine.kubelet.extraConfig (KubeletConfig.config) goes over ours, nested maps merged."""
    layout = Layout(etc=tmp_path / "etc/kubernetes", var_lib=tmp_path / "var/lib/kubelet")
    config["machine"]["kubelet"]["extraConfig"] = {
        "serverTLSBootstrap": True,
        "maxPods": 42,
        "logging": {"verbosity": 3},
    }
    kc = yaml.safe_load(prepare(config, layout, NODE_ADDRS).files[layout.config][0])
    assert kc["serverTLSBootstrap"] is True and kc["maxPods"] == 42
    assert kc["logging"] == {"format": "json", "verbosity": 3}  # ours (Talos' json) kept beside it
    assert kc["healthzPort"] == 10248  # ours kept where extraConfig is silent


def test_extra_config_cannot_change_protected_fields(config, tmp_path):
    """Talos' protected KubeletConfiguration fields are refused, naming them."""
    layout = Layout(etc=tmp_path / "etc/kubernetes", var_lib=tmp_path / "var/lib/kubelet")
    config["machine"]["kubelet"]["extraConfig"] = {"staticPodPath": "/elsewhere"}
    with pytest.raises(KubeletPrepError, match="staticPodPath cannot be overridden"):
        prepare(config, layout, NODE_ADDRS)
