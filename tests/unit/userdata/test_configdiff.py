"""The config diff and its live/reboot classification (pure: two effective configs in,
changes, services to restart and what needs a reboot out)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from talos_init.userdata import validate
from talos_init.userdata.configdiff import classify, diff, plan
from tests.unit.userdata.pki import fill

FIXTURE = Path(__file__).parent / "fixtures/multidoc.yaml"


@pytest.fixture
def base() -> dict:
    result = validate.parse(fill(FIXTURE.read_text()))
    assert result.config is not None
    return result.config.effective


def test_the_same_config_has_no_changes(base):
    p = plan(base, copy.deepcopy(base))
    assert p.changes == () and p.restart == () and p.live


def test_diff_reports_adds_removes_changes_and_compares_lists_whole():
    old = {"a": {"b": 1, "c": [1, 2], "gone": True}, "n": 1}
    new = {"a": {"b": 2, "c": [1, 2, 3], "new": {"x": 1}}, "n": 1.0}
    assert diff(old, new) == [
        ("a.b", "change", 1, 2), ("a.c", "change", [1, 2], [1, 2, 3]),
        ("a.gone", "remove", True, None), ("a.new", "add", None, {"x": 1}),
        ("n", "change", 1, 1.0)]  # 1 and 1.0 differ in YAML's eyes too


@pytest.mark.parametrize("path, restart", [
    ("machine.network.hostname", ()),
    ("machine.network.interfaces", ()),
    ("machine.network.nameservers", ()),
    ("machine.sysctls.net.ipv4.ip_forward", ("machine-setup",)),
    ("machine.files", ("machine-setup",)),
    ("machine.registries.mirrors", ("machine-setup",)),
    ("machine.kubelet.extraArgs", ("kubelet",)),
    ("machine.nodeLabels.zone", ("kubelet",)),
    ("machine.pods", ("kubelet",)),
    ("cluster.controlPlane.endpoint", ("kubelet",)),
    ("machine.ca.crt", ("apid",)),
    ("machine.time.servers", ()),
])
def test_live_fields_and_their_services(path, restart):
    assert classify(path)[0] == restart


@pytest.mark.parametrize("path", ["machine.install.disk", "machine.install.wipe", "machine.type",
                                  "machine.env.HTTP_PROXY", "machine.somethingNew",
                                  "machine.networkx"])
def test_install_disk_type_and_anything_unknown_need_a_reboot(path):
    assert classify(path)[0] is None


def test_plan_of_a_typical_change(base):
    new = copy.deepcopy(base)
    new["machine"]["network"]["hostname"] = "worker-8"
    new["machine"].setdefault("sysctls", {})["vm.max_map_count"] = "262144"
    new["machine"].setdefault("nodeLabels", {})["zone"] = "b"
    new["machine"]["registries"] = {"mirrors": {"docker.io": {"endpoints": ["http://10.0.2.2:5000"]}}}
    p = plan(base, new)
    # The fixture has sysctls {} but no nodeLabels or registries: those are added whole.
    assert sorted((c.path, c.op) for c in p.changes) == [
        ("machine.network.hostname", "change"), ("machine.nodeLabels", "add"),
        ("machine.registries", "add"), ("machine.sysctls.vm.max_map_count", "add")]
    assert p.live and p.network
    assert p.restart == ("machine-setup", "kubelet")  # files first, then the kubelet


def test_a_changed_install_disk_needs_a_reboot_and_says_why(base):
    new = copy.deepcopy(base)
    new["machine"]["install"]["disk"] = "/dev/vdb"
    new["machine"]["network"]["hostname"] = "other"
    p = plan(base, new)
    assert not p.live
    assert [c.path for c in p.reboot] == ["machine.install.disk"]
    assert "boot" in p.reboot[0].why
    assert p.restart == ()  # the hostname is live and needs no restart


def test_apid_restarts_last(base):
    new = copy.deepcopy(base)
    new["machine"]["certSANs"] = ["node.example"]
    new["machine"]["files"] = [{"path": "/var/x", "content": "y", "op": "create", "permissions": 0o600}]
    new["cluster"]["token"] = "abcdef.0123456789abcdef"
    assert plan(base, new).restart == ("machine-setup", "kubelet", "apid")


def test_changes_carry_no_values_unless_asked(base):
    new = copy.deepcopy(base)
    new["machine"]["token"] = "secret.0123456789abcdef"
    change = plan(base, new).changes[0]
    assert "old" not in change.as_dict() and "new" not in change.as_dict()
    assert change.as_dict(values=True)["new"] == "secret.0123456789abcdef"
