"""One worker written twice: in Talos 1.15's multi-document layout and as one v1alpha1 document.

Shared by the host test that compares what the node derives from each, and the e2e boot
of the multi-document form. Both start from an `osctl gen config --talos-version 1.13`
worker (for its PKI and tokens). The multi-document form has no v1alpha1 network
section: eth0 by LinkConfig + DHCPv4Config, a static address on a second NIC by
LinkConfig, the hostname by HostnameConfig, a sysctl by SysctlConfig, a kernel module by
KernelModuleConfig, a registry mirror
by RegistryMirrorConfig, kubelet flags and config file by KubeletConfig, the cluster by
KubeClusterConfig, KubeNetworkConfig and KubeAPIServerCAConfig.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import yaml

HOSTNAME = "node-115"
SECOND_NIC = "eth1"
SECOND_ADDRESS = "192.168.150.10/24"
SYSCTL = ("net.ipv4.tcp_keepalive_time", "600")
MIRROR = ("docker.io", "http://10.0.2.2:5000")
KUBELET_ARGS = {"v": "3", "node-labels": "talos115.example.org/layout=multidoc"}
KUBELET_CONFIG = {"maxPods": 42, "serverTLSBootstrap": True}
KUBELET_IMAGE = "ghcr.io/siderolabs/kubelet:v1.34.0"
MODULE = {"name": "bonding", "parameters": ["max_bonds=0"]}  # loads, makes no bond0
CLUSTER_NAME = "talos115"
DNS_DOMAIN = "cluster.talos115"
SERVICE_SUBNET = "10.112.0.0/12"
POD_SUBNET = "10.244.0.0/16"


def _base(gen_worker: dict[str, Any]) -> dict[str, Any]:
    """The generated worker without what either layout then sets on its own."""
    v1 = copy.deepcopy(gen_worker)
    v1["cluster"].pop("id", None)  # DiscoveryIdentityConfig in 1.15: not acted on here
    v1["cluster"].pop("secret", None)
    v1["machine"].pop("network", None)
    v1["machine"].pop("kubelet", None)
    return v1


def multi_document(gen_worker: dict[str, Any]) -> str:
    v1 = _base(gen_worker)
    cluster = v1["cluster"]
    endpoint = cluster.pop("controlPlane")["endpoint"]
    ca_pem = base64.b64decode(cluster.pop("ca")["crt"]).decode()
    cluster.pop("clusterName", None)
    cluster.pop("network", None)
    doc = lambda kind, **f: {"apiVersion": "v1alpha1", "kind": kind, **f}  # noqa: E731
    docs = [
        v1,
        doc("LinkConfig", name="eth0",
            routes=[{"destination": "0.0.0.0/0", "gateway": "10.0.2.2"}]),
        doc("DHCPv4Config", name="eth0"),
        doc("LinkConfig", name=SECOND_NIC, addresses=[{"address": SECOND_ADDRESS}], mtu=1400),
        doc("HostnameConfig", hostname=HOSTNAME),
        doc("SysctlConfig", params={SYSCTL[0]: SYSCTL[1]}),
        doc("KernelModuleConfig", **MODULE),
        doc("RegistryMirrorConfig", name=MIRROR[0], endpoints=[{"url": MIRROR[1]}]),
        doc("KubeletConfig", image=KUBELET_IMAGE, extraArgs=KUBELET_ARGS, config=KUBELET_CONFIG),
        doc("KubeClusterConfig", clusterName=CLUSTER_NAME, endpoint=endpoint),
        doc("KubeNetworkConfig", dnsDomain=DNS_DOMAIN, podSubnets=[POD_SUBNET],
            serviceSubnets=[SERVICE_SUBNET]),
        doc("KubeAPIServerCAConfig", acceptedCAs=[ca_pem]),
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def single_document(gen_worker: dict[str, Any]) -> str:
    v1 = _base(gen_worker)
    m, c = v1["machine"], v1["cluster"]
    m["network"] = {
        "hostname": HOSTNAME,
        "interfaces": [
            {"interface": "eth0", "dhcp": True,
             "routes": [{"network": "0.0.0.0/0", "gateway": "10.0.2.2"}]},
            {"interface": SECOND_NIC, "addresses": [SECOND_ADDRESS], "mtu": 1400},
        ],
    }
    m["sysctls"] = {SYSCTL[0]: SYSCTL[1]}
    m["kernel"] = {"modules": [MODULE]}
    m["registries"] = {"mirrors": {MIRROR[0]: {"endpoints": [MIRROR[1]]}}}
    m["kubelet"] = {"image": KUBELET_IMAGE, "extraArgs": KUBELET_ARGS,
                    "extraConfig": KUBELET_CONFIG}
    c["clusterName"] = CLUSTER_NAME
    c["network"] = {"dnsDomain": DNS_DOMAIN, "podSubnets": [POD_SUBNET],
                    "serviceSubnets": [SERVICE_SUBNET]}
    return yaml.safe_dump(v1, sort_keys=False)
