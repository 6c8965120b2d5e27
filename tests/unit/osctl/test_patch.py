"""Machine config patches as talosctl takes them: RFC 6902 JSON patches and strategic-merge
YAML, on single- and multi-document configs; a patch that does not apply names why."""

from __future__ import annotations

import pytest
import yaml

from talos_init.osctl.patch import PatchError, apply

CONFIG = """version: v1alpha1
machine:
  type: worker
  network:
    hostname: a
    interfaces:
      - interface: eth0
        dhcp: true
        vlans:
          - vlanId: 10
            mtu: 1500
  sysctls:
    vm.max_map_count: "65530"
  certSANs: [one]
cluster:
  clusterName: demo
---
apiVersion: v1alpha1
kind: ResolverConfig
nameservers:
  - address: 10.0.0.1
"""


def docs(text: str) -> list:
    return list(yaml.safe_load_all(text))


def v1(text: str) -> dict:
    return docs(text)[0]


def test_json_patch_add_replace_remove_on_the_v1alpha1_document():
    out = apply(CONFIG, [("p", '''[
        {"op": "replace", "path": "/machine/network/hostname", "value": "b"},
        {"op": "add", "path": "/machine/sysctls/net.ipv4.ip_forward", "value": "1"},
        {"op": "add", "path": "/machine/certSANs/-", "value": "two"},
        {"op": "add", "path": "/machine/certSANs/0", "value": "zero"},
        {"op": "remove", "path": "/cluster/clusterName"},
        {"op": "test", "path": "/machine/type", "value": "worker"}]''')])
    m = v1(out)["machine"]
    assert m["network"]["hostname"] == "b"
    assert m["sysctls"] == {"vm.max_map_count": "65530", "net.ipv4.ip_forward": "1"}
    assert m["certSANs"] == ["zero", "one", "two"]
    assert v1(out)["cluster"] == {}
    assert docs(out)[1]["kind"] == "ResolverConfig"  # other documents untouched


def test_json_patch_move_copy_and_escaped_pointers():
    out = apply(CONFIG, [("p", yaml.safe_dump([
        {"op": "copy", "from": "/machine/network/hostname", "path": "/machine/nodeLabels"},
        {"op": "add", "path": "/machine/files", "value": [{"path": "/var/a~b/c"}]},
        {"op": "move", "from": "/machine/certSANs", "path": "/machine/sans"},
        {"op": "add", "path": "/machine/kubelet", "value": {"extraArgs": {"a/b": "1"}}},
        {"op": "replace", "path": "/machine/kubelet/extraArgs/a~1b", "value": "2"}]))])
    m = v1(out)["machine"]
    assert m["nodeLabels"] == "a" and m["sans"] == ["one"] and "certSANs" not in m
    assert m["kubelet"]["extraArgs"] == {"a/b": "2"}


@pytest.mark.parametrize("ops, why", [
    ('[{"op": "replace", "path": "/machine/nope", "value": 1}]', "no 'nope' here"),
    ('[{"op": "remove", "path": "/machine/certSANs/5"}]', "index 5 is out of range"),
    ('[{"op": "add", "path": "machine/x", "value": 1}]', "not a JSON pointer"),
    ('[{"op": "test", "path": "/machine/type", "value": "controlplane"}]', "test failed"),
    ('[{"op": "frobnicate", "path": "/machine"}]', "unknown op 'frobnicate'"),
    ('[{"op": "add", "path": "/machine/x"}]', "add needs a 'value'"),
])
def test_a_json_patch_that_does_not_apply_says_which_operation_and_why(ops, why):
    with pytest.raises(PatchError, match=r"p: operation 0: .*" + why.replace("(", r"\(")):
        apply(CONFIG, [("p", ops)])


def test_strategic_merge_merges_maps_replaces_scalars_and_appends_lists():
    out = apply(CONFIG, [("p.yaml", """machine:
  network:
    hostname: b
  sysctls:
    net.ipv4.ip_forward: "1"
  certSANs: [two]
  nodeLabels: {zone: b}
""")])
    m = v1(out)["machine"]
    assert m["network"]["hostname"] == "b"
    assert m["network"]["interfaces"][0]["interface"] == "eth0"  # untouched siblings stay
    assert m["sysctls"] == {"vm.max_map_count": "65530", "net.ipv4.ip_forward": "1"}
    assert m["certSANs"] == ["one", "two"] and m["nodeLabels"] == {"zone": "b"}


def test_strategic_merge_merges_interfaces_and_vlans_by_their_keys():
    out = apply(CONFIG, [("p", """machine:
  network:
    interfaces:
      - interface: eth0
        mtu: 9000
        vlans:
          - vlanId: 10
            mtu: 1400
          - vlanId: 20
      - interface: eth1
        dhcp: false
""")])
    ifs = v1(out)["machine"]["network"]["interfaces"]
    assert [i["interface"] for i in ifs] == ["eth0", "eth1"]
    assert ifs[0]["dhcp"] is True and ifs[0]["mtu"] == 9000
    assert ifs[0]["vlans"] == [{"vlanId": 10, "mtu": 1400}, {"vlanId": 20}]


def test_strategic_merge_delete_directives_and_documents_by_kind():
    out = apply(CONFIG, [("p", """machine:
  sysctls:
    $patch: delete
  network:
    interfaces:
      - interface: eth0
        $patch: delete
---
apiVersion: v1alpha1
kind: ResolverConfig
nameservers: [{address: 10.0.0.2}]
---
apiVersion: v1alpha1
kind: HostnameConfig
hostname: c
auto: "off"
""")])
    d = docs(out)
    assert "sysctls" not in d[0]["machine"] and d[0]["machine"]["network"]["interfaces"] == []
    assert d[1]["nameservers"] == [{"address": "10.0.0.1"}, {"address": "10.0.0.2"}]
    assert d[2] == {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "hostname": "c",
                    "auto": "off"}
    out = apply(out, [("p", "apiVersion: v1alpha1\nkind: HostnameConfig\n$patch: delete\n")])
    assert [x.get("kind") for x in docs(out)] == [None, "ResolverConfig"]


def test_patches_apply_in_order_and_json_and_yaml_mix():
    out = apply(CONFIG, [("a", "machine: {network: {hostname: x}}"),
                         ("b", '[{"op": "replace", "path": "/machine/network/hostname", '
                               '"value": "y"}]')])
    assert v1(out)["machine"]["network"]["hostname"] == "y"


@pytest.mark.parametrize("patch, why", [
    ("machine: [unclosed", "not valid YAML or JSON"),
    ("42", "a patch is a list of JSON patch operations or one or more YAML documents"),
    ("apiVersion: v1alpha1\nkind: NoSuch\n$patch: delete\n", "does not have"),
])
def test_bad_patches_are_refused_with_a_reason(patch, why):
    with pytest.raises(PatchError, match=why):
        apply(CONFIG, [("p", patch)])
