"""The acted-on kinds folded into the v1alpha1 shape; Talos' conflict and duplicate refusals."""

from __future__ import annotations

import base64

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talos_init.userdata import validate
from tests.unit.userdata.pki import CLUSTER_CA, fill
from tests.unit.userdata.test_kinds import V1, V1_BARE

CLUSTER_PEM = base64.b64decode(CLUSTER_CA.crt).decode()
CLUSTER_KEY_PEM = base64.b64decode(CLUSTER_CA.key).decode()


def _indent(pem: str, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in pem.splitlines())


def parse_ok(text: str):
    result = validate.parse(text)
    assert result.errors == [], [p.format() for p in result.errors]
    return result.config.effective


def test_cluster_documents_fold():
    """KubeClusterConfig, KubeAPIServerCAConfig, KubeNetworkConfig, KubeNodeConfig, KubeletConfig."""
    eff = parse_ok(
        V1_BARE
        + "---\napiVersion: v1alpha1\nkind: KubeClusterConfig\nclusterName: c1\n"
        "endpoint: https://10.0.2.15:6443\n"
        "---\napiVersion: v1alpha1\nkind: KubeAPIServerCAConfig\nacceptedCAs:\n    - |\n"
        + _indent(CLUSTER_PEM, 6)
        + "---\napiVersion: v1alpha1\nkind: KubeNetworkConfig\ndnsDomain: k8s.example\n"
        "podSubnets: [10.32.0.0/16]\nserviceSubnets: [10.33.0.0/16]\n"
        "---\napiVersion: v1alpha1\nkind: KubeNodeConfig\nnodeIP:\n    validSubnets: [10.0.2.0/24]\n"
        "labels: {pool: a}\n"
        "---\napiVersion: v1alpha1\nkind: KubeletConfig\nimage: ghcr.io/siderolabs/kubelet:v1.34.0\n"
        "config: {maxPods: 42}\nextraArgs: {v: '2'}\nclusterDNS: [10.33.0.10]\n"
    )
    c, m = eff["cluster"], eff["machine"]
    assert c["clusterName"] == "c1" and c["controlPlane"]["endpoint"] == "https://10.0.2.15:6443"
    assert base64.b64decode(c["ca"]["crt"]).decode() == CLUSTER_PEM and c["ca"]["key"] == ""
    assert c["network"]["dnsDomain"] == "k8s.example"
    assert c["network"]["podSubnets"] == ["10.32.0.0/16"]
    assert c["network"]["serviceSubnets"] == ["10.33.0.0/16"]
    assert m["kubelet"]["nodeIP"] == {"validSubnets": ["10.0.2.0/24"]}
    assert m["nodeLabels"] == {"pool": "a"}
    assert m["kubelet"]["extraConfig"] == {"maxPods": 42}
    assert m["kubelet"]["extraArgs"] == {"v": "2"}
    assert m["kubelet"]["clusterDNS"] == ["10.33.0.10"]


def test_issuing_ca_folds_with_its_key():
    """A control plane's issuingCA becomes cluster.ca with both parts (base64 as v1alpha1)."""
    eff = parse_ok(
        V1_BARE
        + "---\napiVersion: v1alpha1\nkind: KubeClusterConfig\nclusterName: c1\n"
        "endpoint: https://10.0.2.15:6443\n"
        "---\napiVersion: v1alpha1\nkind: KubeAPIServerCAConfig\nissuingCA:\n    cert: |\n"
        + _indent(CLUSTER_PEM, 8)
        + "    key: |\n"
        + _indent(CLUSTER_KEY_PEM, 8)
    )
    assert eff["cluster"]["ca"] == {"crt": CLUSTER_CA.crt, "key": CLUSTER_CA.key}


def test_network_documents_fold():
    """LinkConfig, DHCPv4Config, VLANConfig, BondConfig, StaticHostConfig, hostname, resolvers."""
    eff = parse_ok(
        V1
        + "---\napiVersion: v1alpha1\nkind: LinkConfig\nname: eth0\nmtu: 1400\n"
        "addresses: [{address: 192.168.50.2/24}]\n"
        "routes: [{destination: 10.9.0.0/16, gateway: 192.168.50.1, metric: 5}, "
        "{gateway: 192.168.50.254}]\n"
        "---\napiVersion: v1alpha1\nkind: DHCPv4Config\nname: eth1\nrouteMetric: 2048\n"
        "---\napiVersion: v1alpha1\nkind: VLANConfig\nname: eth0.7\nparent: eth0\nvlanID: 7\n"
        "addresses: [{address: 172.16.7.2/24}]\n"
        "---\napiVersion: v1alpha1\nkind: DHCPv4Config\nname: eth0.7\n"
        "---\napiVersion: v1alpha1\nkind: BondConfig\nname: bond0\nlinks: [eth2, eth3]\n"
        "bondMode: active-backup\nmiimon: 100\n"
        "---\napiVersion: v1alpha1\nkind: StaticHostConfig\nname: 10.5.0.1\n"
        "hostnames: [api.example.org]\n"
        "---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: node-a\n"
        "---\napiVersion: v1alpha1\nkind: ResolverConfig\nnameservers: [{address: 10.0.0.53}]\n"
    )
    net = eff["machine"]["network"]
    by_name = {i["interface"]: i for i in net["interfaces"]}
    eth0 = by_name["eth0"]
    assert eth0["addresses"] == ["192.168.50.2/24"] and eth0["mtu"] == 1400
    assert eth0["routes"] == [
        {"network": "10.9.0.0/16", "gateway": "192.168.50.1", "metric": 5},
        {"network": "0.0.0.0/0", "gateway": "192.168.50.254"},
    ]
    assert eth0["vlans"][0]["vlanId"] == 7 and eth0["vlans"][0]["dhcp"] is True
    assert eth0["vlans"][0]["addresses"] == ["172.16.7.2/24"]
    assert by_name["eth1"]["dhcp"] is True
    assert by_name["eth1"]["dhcpOptions"] == {"routeMetric": 2048}
    assert by_name["bond0"]["bond"] == {
        "interfaces": ["eth2", "eth3"],
        "mode": "active-backup",
        "miimon": 100,
    }
    assert net["extraHostEntries"] == [{"ip": "10.5.0.1", "aliases": ["api.example.org"]}]
    assert net["hostname"] == "node-a" and net["nameservers"] == ["10.0.0.53"]


def test_runtime_and_registry_documents_fold():
    """SysctlConfig, EnvironmentConfig, KernelModuleConfig, RegistryMirrorConfig,
    RegistryTLSConfig, RegistryAuthConfig."""
    eff = parse_ok(
        V1
        + "---\napiVersion: v1alpha1\nkind: SysctlConfig\nparams: {net.core.somaxconn: '4096'}\n"
        "---\napiVersion: v1alpha1\nkind: EnvironmentConfig\nvariables: {HTTP_PROXY: http://p:3128}\n"
        "---\napiVersion: v1alpha1\nkind: KernelModuleConfig\nname: bonding\n"
        "parameters: [max_bonds=0]\n"
        "---\napiVersion: v1alpha1\nkind: KernelModuleConfig\nname: veth\n"
        "---\napiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: docker.io\n"
        "endpoints: [{url: 'http://10.0.2.2:5000', overridePath: true}]\n"
        "---\napiVersion: v1alpha1\nkind: RegistryTLSConfig\nname: 10.0.2.2:5000\n"
        "insecureSkipVerify: true\nca: |\n" + _indent(CLUSTER_PEM, 4)
        + "---\napiVersion: v1alpha1\nkind: RegistryAuthConfig\nname: 10.0.2.2:5000\n"
        "username: u\npassword: p\n"
    )
    m = eff["machine"]
    assert m["sysctls"] == {"net.core.somaxconn": "4096"}
    assert m["env"] == {"HTTP_PROXY": "http://p:3128"}
    assert m["kernel"]["modules"] == [
        {"name": "bonding", "parameters": ["max_bonds=0"]},
        {"name": "veth", "parameters": []},
    ]
    assert m["registries"]["mirrors"] == {
        "docker.io": {"endpoints": ["http://10.0.2.2:5000"], "overridePath": True}
    }
    cfg = m["registries"]["config"]["10.0.2.2:5000"]
    assert cfg["tls"]["insecureSkipVerify"] is True
    assert base64.b64decode(cfg["tls"]["ca"]).decode().strip() == CLUSTER_PEM.strip()
    assert cfg["auth"] == {"username": "u", "password": "p"}


def _pos(text: str, marker: str) -> tuple[int, int]:
    at = text.index(marker)
    return text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1


@pytest.mark.parametrize(
    ("v1_machine", "doc", "path", "v1_path", "v1_marker", "doc_marker"),
    [
        (
            "    kubelet:\n        extraArgs: {v: '1'}\n",
            "kind: KubeletConfig\nimage: ghcr.io/siderolabs/kubelet:v1.34.0\n",
            "KubeletConfig",
            "machine.kubelet",
            "kubelet:",
            "KubeletConfig",
        ),
        (
            "    network:\n        hostname: one\n",
            "kind: HostnameConfig\nhostname: two\n",
            "HostnameConfig.hostname",
            "machine.network.hostname",
            "hostname: one",
            "hostname: two",
        ),
        (
            "    time:\n        servers: [10.0.0.1]\n",
            "kind: TimeSyncConfig\nntp: {servers: [10.0.0.2]}\n",
            "TimeSyncConfig",
            "machine.time.servers",
            "servers: [10.0.0.1]",
            "TimeSyncConfig",
        ),
        (  # Talos refuses it whatever the document sets (k8s/node.go)
            "    kubelet:\n        nodeIP: {validSubnets: [10.0.0.0/8]}\n",
            "kind: KubeNodeConfig\nlabels: {a: b}\n",
            "KubeNodeConfig",
            "machine.kubelet.nodeIP",
            "nodeIP:",
            "KubeNodeConfig",
        ),
        (
            "",
            "kind: KubeClusterConfig\nclusterName: c\nendpoint: https://10.0.2.15:6443\n",
            "KubeClusterConfig.endpoint",
            "cluster.controlPlane.endpoint",
            "endpoint: https://10.0.2.15:6443\n    token",
            "endpoint: https://10.0.2.15:6443\n",
        ),
    ],
)
def test_conflict_names_both_places(v1_machine, doc, path, v1_path, v1_marker, doc_marker):
    """A setting in v1alpha1 and in its new document is refused, naming both line:columns."""
    v1 = V1.replace("machine:\n", "machine:\n" + v1_machine, 1)
    text = v1 + "---\napiVersion: v1alpha1\n" + doc
    result = validate.parse(text)
    assert result.config is None
    found = [p for p in result.errors if p.path == path and v1_path in p.message]
    assert found, [p.format() for p in result.problems]
    line, col = _pos(text, v1_marker)
    assert f"(line {line}, column {col})" in found[0].message
    doc_at = text.index(doc_marker, len(v1))
    assert (found[0].line, found[0].column) == _pos(text[: doc_at] + "\0", "\0")


def test_two_documents_of_one_kind_and_name_are_refused():
    """Talos refuses a duplicate document id (kind/name); other names are fine."""
    link = "---\napiVersion: v1alpha1\nkind: LinkConfig\nname: {}\nmtu: 1400\n"
    ok = validate.parse(V1 + link.format("eth0") + link.format("eth1"))
    assert ok.errors == []
    text = V1 + link.format("eth0") + link.format("eth0")
    result = validate.parse(text)
    first = text.index("LinkConfig")
    second = text.index("LinkConfig", first + 1)
    (err,) = result.errors
    assert err.path == "LinkConfig(eth0)"
    assert (err.line, err.column) == _pos(text[:second] + "\0", "\0")
    assert f"(the first is at line {_pos(text, 'LinkConfig')[0]}, column 7)" in err.message


def test_missing_endpoint_names_both_places_to_set_it():
    """With neither cluster.controlPlane nor KubeClusterConfig, the error says where to set it."""
    result = validate.parse(fill(V1_BARE) + "---\napiVersion: v1alpha1\nkind: KubeAPIServerCAConfig\n"
                            "acceptedCAs:\n    - |\n" + _indent(CLUSTER_PEM, 6))
    messages = [p.message for p in result.errors]
    assert messages == [
        "required: set cluster.controlPlane.endpoint or KubeClusterConfig.endpoint"
    ]


def test_link_alias_becomes_a_device_selector():
    """LinkAliasConfig's CEL selector (Talos' example forms) is the deviceSelector of the
    links, VLANs and DHCP documents that name the alias; other forms are a warning."""
    text = (
        V1
        + "---\napiVersion: v1alpha1\nkind: LinkAliasConfig\nname: net0\nselector:\n"
        '    match: mac(link.permanent_addr) == "52:54:00:AA:BB:01"\n'
        "---\napiVersion: v1alpha1\nkind: LinkConfig\nname: net0\n"
        "addresses: [{address: 192.168.60.2/24}]\n"
        "---\napiVersion: v1alpha1\nkind: DHCPv4Config\nname: net0\n"
        "---\napiVersion: v1alpha1\nkind: LinkAliasConfig\nname: net1\nselector:\n"
        "    match: link.type == 1\n"
    )
    result = validate.parse(text)
    assert result.errors == [], [p.format() for p in result.errors]
    (entry,) = result.config.effective["machine"]["network"]["interfaces"]
    assert entry["deviceSelector"] == {"permanentAddr": "52:54:00:aa:bb:01"}
    assert entry["addresses"] == ["192.168.60.2/24"] and entry["dhcp"] is True
    (warning,) = result.warnings
    assert warning.path == "LinkAliasConfig(net1).selector.match"
    assert "not applied" in warning.message
    assert (warning.line, warning.column) == _pos(text, "match: link.type")


_names = st.from_regex(r"eth[0-9]|enp0s[0-9]", fullmatch=True)
_v4 = st.builds(lambda a, b, p: f"10.{a}.{b}.1/{p}", st.integers(0, 255), st.integers(0, 255),
                st.integers(8, 30))
_sysctl = st.from_regex(r"(net|vm|kernel)\.[a-z_]{1,12}", fullmatch=True)
_env = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    links=st.dictionaries(_names, st.tuples(st.lists(_v4, max_size=3, unique=True),
                                            st.none() | st.integers(1280, 9000),
                                            st.booleans()), max_size=3),
    sysctls=st.dictionaries(_sysctl, _text, max_size=4),
    env=st.dictionaries(_env, _text, max_size=3),
)
def test_documents_and_v1alpha1_fold_alike(links, sysctls, env):
    """Property: LinkConfig/DHCPv4Config/SysctlConfig/EnvironmentConfig documents give the
    effective config of the v1alpha1 fields they stand for."""
    docs, interfaces = [], []
    for name, (addresses, mtu, dhcp) in links.items():
        link = {"apiVersion": "v1alpha1", "kind": "LinkConfig", "name": name,
                "addresses": [{"address": a} for a in addresses]}
        iface = {"interface": name, "addresses": addresses}
        if mtu is not None:
            link["mtu"] = iface["mtu"] = mtu
        docs.append(link)
        if dhcp:
            docs.append({"apiVersion": "v1alpha1", "kind": "DHCPv4Config", "name": name})
            iface["dhcp"] = True
        interfaces.append(iface)
    if sysctls:
        docs.append({"apiVersion": "v1alpha1", "kind": "SysctlConfig", "params": sysctls})
    if env:
        docs.append({"apiVersion": "v1alpha1", "kind": "EnvironmentConfig", "variables": env})
    multi = parse_ok(V1 + "".join("---\n" + yaml.safe_dump(d) for d in docs))
    v1 = yaml.safe_load(V1)
    v1["machine"].update({"network": {"interfaces": interfaces}, "sysctls": sysctls, "env": env})
    single = parse_ok(yaml.safe_dump(v1))
    assert multi == single
