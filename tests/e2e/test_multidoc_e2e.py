"""A Talos 1.15 multi-document worker boots the node (issue 18).

One boot of the kubelet stand-in image with a second NIC. The config
(tests/talos115.py) has no v1alpha1 network, kubelet or cluster-network section:
eth0 comes from LinkConfig + DHCPv4Config, a static address on eth1 from LinkConfig,
the hostname from HostnameConfig, a sysctl from SysctlConfig, a registry mirror from
RegistryMirrorConfig, a kernel module with a parameter from KernelModuleConfig,
kubelet flags and its config file from KubeletConfig, and the
cluster from KubeClusterConfig, KubeNetworkConfig and KubeAPIServerCAConfig. Every
check is from outside: osctl (interfaces, read, version) and the stand-in kubelet's
record of the flags and files it was started with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests import talos115
from tests.e2e import nodeapi
from tests.e2e.conftest import Image, UserdataServer, _serve
from tests.e2e.test_node_e2e import standin_image  # noqa: F401 - the shared fixture

pytestmark = pytest.mark.e2e

SECOND_NIC_MAC = "52:54:00:e2:18:01"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Path:
    return nodeapi.gen_cluster(tmp_path_factory.mktemp("cluster"), "talos115")


@pytest.fixture(scope="module")
def node(module_boot, standin_image: Image, cluster: Path):  # noqa: F811
    worker = yaml.safe_load((cluster / "worker.yaml").read_text())
    state = UserdataServer(body=talos115.multi_document(worker).encode())
    server = _serve(state)
    try:
        vm = module_boot(standin_image, server=state, api=True,
                         extra_nics=(SECOND_NIC_MAC,))
        nodeapi.wait_api(cluster / "osctlconfig", vm.spec.api_port, vm=vm)
        yield vm
    finally:
        server.shutdown()
        server.server_close()


def call(cluster: Path, vm, *args: str) -> str:
    return nodeapi.ok(cluster / "osctlconfig", vm.spec.api_port, *args)


def wait_until(what: str, probe: Callable[[], object], timeout: float = 300) -> object:
    """Poll the node through the API until ``probe()`` is truthy (services start asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(2)
    raise AssertionError(f"{what}: not seen within {timeout:.0f}s")


def interfaces(cluster: Path, vm) -> dict[str, dict]:
    return {i["name"]: i for i in json.loads(call(cluster, vm, "-o", "json", "interfaces"))}


def test_links_from_link_and_dhcp_documents(node, cluster):
    """eth0: DHCP lease (DHCPv4Config) and default route (LinkConfig); eth1: the static address
    and MTU of its LinkConfig."""
    def applied():
        links = interfaces(cluster, node)
        eth1 = next((x for x in links.values() if talos115.SECOND_ADDRESS in x["addresses"]), None)
        return (links, eth1) if "10.0.2.15/24" in links["eth0"]["addresses"] and eth1 else None

    links, eth1 = wait_until("eth0's lease and eth1's static address", applied)
    assert eth1["name"] == talos115.SECOND_NIC and eth1["mac"] == SECOND_NIC_MAC, eth1
    assert eth1["up"] and eth1["mtu"] == 1400, eth1
    routes = json.loads(call(cluster, node, "-o", "json", "routes"))
    default = [(r["gateway"], r["interface"]) for r in routes
               if r["family"] == "inet" and r["destination"] == "0.0.0.0/0"]
    assert default == [("10.0.2.2", "eth0")], default
    status = json.loads(call(cluster, node, "read", "/run/talos/networkd/status.json"))
    assert [(le["link"], le["address"]) for le in status["leases"]] == [
        ("eth0", "10.0.2.15/24")], status


def test_hostname_sysctl_module_and_mirror(node, cluster):
    """HostnameConfig, SysctlConfig, KernelModuleConfig and RegistryMirrorConfig hold on the
    running node."""
    wait_until("the hostname", lambda: json.loads(call(cluster, node, "-o", "json", "version"))
               ["hostname"] == talos115.HOSTNAME, 180)
    assert call(cluster, node, "read", "/etc/hostname") == talos115.HOSTNAME + "\n"
    nodeapi.wait_state(cluster / "osctlconfig", node.spec.api_port, "containerd", {"ready"}, 300)
    name, value = talos115.SYSCTL
    assert call(cluster, node, "read", "/proc/sys/" + name.replace(".", "/")).strip() == value
    nodeapi.wait_state(cluster / "osctlconfig", node.spec.api_port, "machine-setup",
                       {"finished"}, 300)
    # bonding loaded; with its default max_bonds=1 it would have made bond0: max_bonds=0
    # (not readable in sysfs) shows as no bond0 at all.
    assert talos115.MODULE == {"name": "bonding", "parameters": ["max_bonds=0"]}
    assert call(cluster, node, "read", "/sys/module/bonding/initstate").strip() == "live"
    assert "bond0" not in interfaces(cluster, node)
    hosts = call(cluster, node, "read", f"/etc/containerd/certs.d/{talos115.MIRROR[0]}/hosts.toml")
    assert f'[host."{talos115.MIRROR[1]}"]' in hosts, hosts


def test_kubelet_flags_and_config_file(node, cluster):
    """The stand-in kubelet got KubeletConfig's flags and config, KubeClusterConfig's endpoint
    and name, KubeNetworkConfig's DNS domain and KubeAPIServerCAConfig's CA."""
    nodeapi.wait_state(cluster / "osctlconfig", node.spec.api_port, "kubelet", {"ready"}, 400)
    record = json.loads(call(cluster, node, "read", "/var/lib/kubelet/standin-record.json"))
    flags = {k: v[-1] for k, v in record["flags"].items()}
    assert flags["v"] == "3", flags
    assert flags["hostname-override"] == talos115.HOSTNAME, flags
    assert flags["node-labels"] == talos115.KUBELET_ARGS["node-labels"], flags
    config = record["files"]["config"]
    assert config["maxPods"] == 42 and config["serverTLSBootstrap"] is True, config
    assert config["clusterDomain"] == talos115.DNS_DOMAIN, config
    assert config["clusterDNS"] == ["10.112.0.10"], config
    boot = record["files"]["bootstrap-kubeconfig"]["clusters"][0]
    assert boot["name"] == talos115.CLUSTER_NAME, boot
    assert boot["cluster"]["server"] == "https://10.0.2.15:6443", boot
    served = yaml.safe_load((cluster / "worker.yaml").read_text())
    ca = base64.b64decode(served["cluster"]["ca"]["crt"])
    assert record["files"]["ca"]["sha256"] == hashlib.sha256(ca).hexdigest()
