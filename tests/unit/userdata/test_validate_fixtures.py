"""Hand-written Talos configs, single- and multi-document, validate into the effective shape."""

from __future__ import annotations

import ipaddress

from talos_init.userdata import validate


def test_full_single_document_is_valid_and_normalized(fixture_text):
    """Every acted-on field kind in one v1alpha1 document lands normalized in the effective config."""
    result = validate.parse(fixture_text("full_single.yaml"))
    assert result.errors == [], [p.format() for p in result.errors]
    eff = result.config.effective
    net = eff["machine"]["network"]
    assert net["hostname"] == "node-1.example.org"
    assert net["nameservers"] == ["9.9.9.9", "2620:fe::fe"]
    eth0, selected, ignored = net["interfaces"]
    assert eth0["addresses"] == ["192.168.2.10/24", "10.5.0.7/32"]
    assert eth0["routes"][1] == {"network": "0.0.0.0/0", "gateway": "192.168.2.1"}
    assert [v["vlanId"] for v in eth0["vlans"]] == [100, 200]
    assert selected["addresses"] == ["10.9.0.2/16"] and "cidr" not in selected
    assert selected["deviceSelector"] == {"hardwareAddr": "52:54:00:*", "driver": "virtio_net"}
    assert ignored["ignore"] is True and ignored["dhcp"] is False
    m = eff["machine"]
    assert m["install"] == {
        "disk": "/dev/vda",
        "wipe": True,
        "image": "ghcr.io/siderolabs/installer:v1.7.0",
    }
    assert m["kubelet"]["extraArgs"] == {
        "feature-gates": "ServerSideApply=true",
        "node-labels": ["a=b", "c=d"],
    }
    assert m["kubelet"]["nodeIP"]["validSubnets"] == ["10.0.0.0/8", "!10.0.0.3/32"]
    assert m["sysctls"] == {"kernel.domainname": "talos.dev", "net.ipv4.ip_forward": "1"}
    assert [f["permissions"] for f in m["files"]] == [0o644, 0o600]
    assert m["env"]["https_proxy"] == "http://proxy.example.org:3128"
    assert m["time"]["servers"] == ["time.cloudflare.com", "192.168.2.1", "/dev/ptp0"]
    c = eff["cluster"]
    assert c["controlPlane"]["endpoint"] == "https://cp.example.org:6443"
    assert c["network"]["podSubnets"] == ["10.244.0.0/16", "fd00:10:244::/56"]
    assert c["network"]["cni"] == {"name": "custom", "urls": ["https://example.org/cni.yaml"]}


def test_full_single_document_typed_model(fixture_text):
    """The typed config carries parsed addresses, routes, VLANs, selectors and keys."""
    cfg = validate.parse(fixture_text("full_single.yaml")).config
    eth0 = cfg.machine.network.interfaces[0]
    assert eth0.name == "eth0" and eth0.dhcp and eth0.mtu == 1500
    assert eth0.addresses[1] == ipaddress.ip_interface("10.5.0.7/32")
    assert eth0.routes[1].network == ipaddress.ip_network("0.0.0.0/0")
    assert eth0.vlans[0].vlan_id == 100 and eth0.vlans[0].mtu == 1400
    assert cfg.machine.network.interfaces[1].selector.hardware_addr == "52:54:00:*"
    assert cfg.machine.ca.key.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----")
    assert cfg.cluster.ca.crt.startswith(b"-----BEGIN CERTIFICATE-----")
    assert cfg.machine.kubelet.extra_mounts[0].options == ("bind", "rshared", "rw")
    assert cfg.cluster.service_subnets[1] == ipaddress.ip_network("fd00:10:96::/112")
    assert cfg.machine.install_disk == "/dev/vda" and cfg.machine.install_wipe


def test_unsupported_fields_are_reported_once_each(fixture_text):
    """Valid Talos fields this node ignores are listed once per field, with their line."""
    result = validate.parse(fixture_text("full_single.yaml"))
    paths = [p.path for p in result.unsupported]
    assert sorted(paths) == sorted(
        [
            "debug",
            "machine.install.image",  # dhcpOptions.routeMetric is acted on (networkd) since issue 6
            "machine.time.bootTimeout",
            "machine.features",
            "cluster.id",
            "cluster.etcd",
            "cluster.allowSchedulingOnControlPlanes",
        ]
    )
    assert len(paths) == len(set(paths))
    image = next(p for p in result.unsupported if p.path == "machine.install.image")
    assert (image.line, image.column) == (52, 9)  # the key "image:" in the fixture


def test_multi_document_kinds_fold_into_v1alpha1(fixture_text):
    """HostnameConfig, ResolverConfig, KubeletConfig, KubeNodeConfig and TimeSyncConfig
    land in the v1alpha1 shape."""
    result = validate.parse(fixture_text("multidoc.yaml"))
    assert result.errors == [], [p.format() for p in result.errors]
    m = result.config.effective["machine"]
    assert m["network"]["hostname"] == "worker-7"
    assert m["network"]["nameservers"] == ["10.0.0.1", "2001:4860:4860::8888"]
    assert m["network"]["searchDomains"] == ["example.org"]
    assert m["kubelet"]["extraArgs"] == {"max-pods": "250"}
    assert m["kubelet"]["nodeIP"] == {"validSubnets": ["10.0.2.0/24"]}
    assert m["time"]["servers"] == ["time.cloudflare.com"]
    assert sorted(p.path for p in result.unsupported) == [
        "HostnameConfig.auto",
        "KubeSpanConfig",
        "KubeletConfig.image",
        "ResolverConfig.searchDomains.disableDefault",
    ]
    assert result.config.machine.network.hostname == "worker-7"


def test_minimal_worker_gets_defaults(fixture_text):
    """A minimal worker gets the cluster network defaults and empty sections consumers rely on."""
    eff = validate.parse(fixture_text("minimal_worker.yaml")).config.effective
    assert eff["cluster"]["network"] == {
        "dnsDomain": "cluster.local",
        "podSubnets": ["10.244.0.0/16"],
        "serviceSubnets": ["10.96.0.0/12"],
        "cni": {"name": "flannel"},
    }
    assert eff["machine"]["network"] == {"interfaces": [], "nameservers": [], "searchDomains": []}
    assert eff["machine"]["install"] == {"wipe": False}
    assert eff["machine"]["kubelet"] == {"extraArgs": {}, "extraMounts": []}


def test_shipped_configs_validate():
    """configs/controlplane.yaml and configs/worker.yaml are valid with nothing unsupported."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    for name, role in (("controlplane.yaml", "controlplane"), ("worker.yaml", "worker")):
        result = validate.parse((root / "configs" / name).read_bytes())
        assert result.problems == [] and result.config.machine.type == role
        assert result.config.machine.install_disk == "/dev/vda"


def test_gen_config_style_controlplane_is_accepted(fixture_text):
    """A config laid out as `talosctl gen config` writes it validates; its extras are notices, not errors."""
    result = validate.parse(fixture_text("gen_config_style_controlplane.yaml"))
    assert result.errors == [], [p.format() for p in result.errors]
    assert result.config.machine.type == "controlplane"
    assert result.config.machine.install_disk == "/dev/sda"
    notices = {p.path for p in result.unsupported}
    assert {
        "machine.kubelet.image",
        "machine.features",
        "cluster.apiServer",
        "cluster.etcd",
        "persist",
    } <= notices
