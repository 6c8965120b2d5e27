"""The kubelet's config file for configs/worker.yaml equals what Talos writes, field by field.

Each row names the Talos source of the value (siderolabs/talos, read at ad88231):
  spec      internal/app/machined/pkg/controllers/k8s/kubelet_spec.go NewKubeletConfiguration
  consts    pkg/machinery/constants/constants.go
  service   internal/app/machined/pkg/controllers/k8s/kubelet_service.go (files and modes)
Where we differ on purpose, the row says why.
"""

from __future__ import annotations

import base64
import ipaddress
import stat
from pathlib import Path

import pytest
import yaml

from talos_init.kubelet.prep import KubeletPrepError, Layout, node_name, prepare, write_files
from talos_init.userdata.validate import parse

REPO = Path(__file__).resolve().parents[3]
NODE = Layout()  # the node's own paths: /etc/kubernetes, /var/lib/kubelet
ADDRS = [ipaddress.ip_address("10.0.2.15")]  # QEMU user networking's guest address

# (field, Talos' value for configs/worker.yaml, source)
TALOS = [
    ("apiVersion", "kubelet.config.k8s.io/v1beta1", "spec: TypeMeta"),
    ("kind", "KubeletConfiguration", "spec: TypeMeta"),
    ("staticPodPath", "/etc/kubernetes/manifests", "spec + consts ManifestsDirectory"),
    ("port", 10250, "spec + consts KubeletPort"),
    ("authentication", {"x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
                        "webhook": {"enabled": True, "cacheTTL": "2m0s"},
                        "anonymous": {"enabled": False}},
     "spec (cacheTTL: the kubelet's v1beta1 default, written out)"),
    ("authorization", {"mode": "Webhook"}, "spec"),
    ("cgroupRoot", "/", "spec: cgroup.Root()"),
    ("rotateCertificates", True, "spec"),
    ("protectKernelDefaults", True, "spec"),
    ("containerRuntimeEndpoint", "unix:///run/containerd/containerd.sock",
     "spec + consts CRIContainerdAddress (kubelet >= 1.27 reads it from the config)"),
    ("seccompDefault", True, "spec: only with machine.kubelet.defaultRuntimeSeccompProfileEnabled"),
    ("address", "0.0.0.0", "spec"),
    ("oomScoreAdj", -450, "spec + consts KubeletOOMScoreAdj"),
    ("clusterDomain", "cluster.local", "spec: cluster.network.dnsDomain"),
    ("clusterDNS", ["10.96.0.10"], "kubelet_config.go: 10th address of the service subnet"),
    ("serializeImagePulls", False, "spec"),
    ("failSwapOn", False, "spec"),
    ("systemReserved", {"cpu": "50m", "pid": "100", "ephemeral-storage": "256Mi",
                        "memory": "384Mi"},
     "spec + consts KubeletSystemReserved* (memory: the worker's value)"),
    ("logging", {"format": "json"}, "spec"),
    ("shutdownGracePeriod", "30s", "spec + consts KubeletShutdownGracePeriod"),
    ("shutdownGracePeriodCriticalPods", "10s",
     "spec + consts KubeletShutdownGracePeriodCriticalPods"),
    ("tlsMinVersion", "VersionTLS13", "spec"),
    ("resolvConf", "/etc/resolv.conf",
     "spec sets ResolverConfig to Talos' host DNS file; ours is the node's resolv.conf"),
    # The kubelet's own v1beta1 defaults, written out so the file says what runs.
    ("readOnlyPort", 0, "kubelet default (Talos leaves it)"),
    ("healthzBindAddress", "127.0.0.1", "kubelet default (Talos leaves it)"),
    ("healthzPort", 10248, "kubelet default (Talos leaves it)"),
    ("cgroupDriver", "cgroupfs", "kubelet default (Talos leaves it); containerd's runc agrees"),
]
# Talos sets these; we do not, and why.
NOT_SET = {
    "streamingConnectionIdleTimeout": "Talos writes 5m; the kubelet documents it as "
                                      "'Deprecated: no longer has any effect'",
    "systemCgroups": "Talos' /system holds its services; ours has services below it, so the "
                     "kubelet could not move processes into it (cgroup v2: no internal processes)",
    "kubeletCgroups": "the kubelet stays in the service cgroup PID 1 gives it",
}


@pytest.fixture(scope="module")
def worker() -> dict:
    result = parse((REPO / "configs/worker.yaml").read_bytes(), "worker.yaml")
    assert result.ok, result.problems
    return result.config.effective


@pytest.fixture(scope="module")
def kubelet_yaml(worker) -> dict:
    prepared = prepare(worker, NODE, ADDRS)
    return yaml.safe_load(prepared.files[NODE.config][0])


@pytest.mark.parametrize("name,value,source", TALOS, ids=[row[0] for row in TALOS])
def test_field_equals_talos(kubelet_yaml, name, value, source):
    """One KubeletConfiguration field has Talos' value for configs/worker.yaml."""
    assert kubelet_yaml.get(name) == value, f"{name}: Talos has {value!r} ({source})"


def test_no_other_fields(kubelet_yaml):
    """Nothing beyond the table (a new field needs its Talos source); the differences are named."""
    assert sorted(kubelet_yaml) == sorted(row[0] for row in TALOS)
    assert not set(NOT_SET) & set(kubelet_yaml)


def test_controlplane_reserves_more_memory(worker):
    """512Mi on a control plane node (KubeletSystemReservedMemoryControlPlane)."""
    cp = {**worker, "machine": {**worker["machine"], "type": "controlplane"}}
    doc = yaml.safe_load(prepare(cp, NODE, ADDRS).files[NODE.config][0])
    assert doc["systemReserved"]["memory"] == "512Mi"


def test_seccomp_default_follows_the_config(worker):
    """Without defaultRuntimeSeccompProfileEnabled Talos leaves seccompDefault unset."""
    kub = {k: v for k, v in worker["machine"]["kubelet"].items()
           if k != "defaultRuntimeSeccompProfileEnabled"}
    off = {**worker, "machine": {**worker["machine"], "kubelet": kub}}
    assert "seccompDefault" not in yaml.safe_load(prepare(off, NODE, ADDRS).files[NODE.config][0])


def test_file_modes_are_talos(worker, tmp_path):
    """kubelet.yaml 0600, bootstrap kubeconfig 0600, ca.crt 0400 (kubelet_service.go)."""
    layout = Layout(etc=tmp_path / "etc/kubernetes", var_lib=tmp_path / "var/lib/kubelet")
    write_files(prepare(worker, layout, ADDRS), layout)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode)
             for p in (layout.config, layout.bootstrap_kubeconfig, layout.ca)}
    assert modes == {"kubelet.yaml": 0o600, "bootstrap-kubeconfig": 0o600, "ca.crt": 0o400}
    write_files(prepare(worker, layout, ADDRS), layout)  # a restart rewrites the 0400 file
    assert stat.S_IMODE(layout.ca.stat().st_mode) == 0o400


def test_runtime_endpoint_is_not_a_flag(worker):
    """--container-runtime-endpoint is deprecated: the config carries it; no flag is passed."""
    flags = prepare(worker, NODE, ADDRS).argv_flags
    assert not [f for f in flags if f.startswith("--container-runtime")]


@pytest.mark.parametrize("flag", ["container-runtime", "container-runtime-endpoint"])
def test_runtime_flags_are_refused(worker, flag):
    """Both are MergeDenied in Talos: an extraArgs value is an error naming the flag."""
    kub = {**worker["machine"]["kubelet"], "extraArgs": {flag: "remote"}}
    cfg = {**worker, "machine": {**worker["machine"], "kubelet": kub}}
    with pytest.raises(KubeletPrepError, match=f"--{flag} cannot be overridden"):
        prepare(cfg, NODE, ADDRS)


def test_accepted_cas_join_the_cluster_ca(worker):
    """ca.crt and the bootstrap kubeconfig's CA are cluster.ca.crt then each acceptedCAs entry."""
    other = b"-----BEGIN CERTIFICATE-----\nb3RoZXI=\n-----END CERTIFICATE-----\n"
    cluster = {**worker["cluster"], "acceptedCAs": [{"crt": base64.b64encode(other).decode()}]}
    prepared = prepare({**worker, "cluster": cluster}, NODE, ADDRS)
    own = base64.b64decode(worker["cluster"]["ca"]["crt"])
    assert prepared.files[NODE.ca][0] == own + other
    boot = yaml.safe_load(prepared.files[NODE.bootstrap_kubeconfig][0])
    data = boot["clusters"][0]["cluster"]["certificate-authority-data"]
    assert base64.b64decode(data) == own + other


@pytest.mark.parametrize("hostname,fqdn,expected", [
    ("worker-1", False, "worker-1"),
    ("Worker_1.example.org", False, "worker-1"),
    ("worker-1.example.org", True, "worker-1.example.org"),
    ("-a!b-.lab", False, "ab"),
])
def test_node_name_from_hostname(hostname, fqdn, expected):
    """Talos' Nodename: the short hostname unless registerWithFQDN, made a valid Node name."""
    assert node_name(hostname, fqdn) == expected


def test_hostname_override_is_the_short_name(worker):
    """An FQDN hostname registers as its short name; registerWithFQDN keeps the whole name."""
    net = {**worker["machine"].get("network", {}), "hostname": "worker-1.lab.example"}
    machine = {**worker["machine"], "network": net}
    flags = prepare({**worker, "machine": machine}, NODE, ADDRS).argv_flags
    assert "--hostname-override=worker-1" in flags
    machine["kubelet"] = {**machine["kubelet"], "registerWithFQDN": True}
    flags = prepare({**worker, "machine": machine}, NODE, ADDRS).argv_flags
    assert "--hostname-override=worker-1.lab.example" in flags


def test_unusable_hostname_is_named():
    """A hostname with nothing valid left is an error naming it."""
    with pytest.raises(KubeletPrepError, match=r"hostname '\.\.\.': no valid"):
        node_name("...")
