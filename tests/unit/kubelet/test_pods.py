"""machine.pods -> the kubelet's staticPodPath: a file per pod, stale ones removed, bad ones named."""

from __future__ import annotations

import json
import stat

import pytest
import yaml

from talos_init.kubelet import pods
from talos_init.kubelet.prep import Layout, prepare, write_files
from tests.unit.kubelet.test_prep import FIXTURE, NODE_ADDRS


def pod(name: str, **spec) -> dict:
    spec.setdefault("containers", [{"name": "app", "image": "example.local/app:1",
                                    "command": ["/app"], "args": ["--x"]}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_each_pod_gets_its_own_file_and_stale_ones_go(tmp_path):
    """Two pods -> two files the kubelet parses back; a later config with one pod removes the other,
    and files that are not ours stay."""
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "admin.yaml").write_text("kind: Pod\n")  # put there by someone else
    pods.write(d, pods.manifests([pod("web", hostNetwork=True), pod("db")]))
    assert sorted(p.name for p in d.iterdir()) == ["admin.yaml", "talos-db.yaml", "talos-web.yaml"]
    back = yaml.safe_load((d / "talos-web.yaml").read_text())
    assert back == pod("web", hostNetwork=True)
    assert stat.S_IMODE((d / "talos-web.yaml").stat().st_mode) == 0o600
    removed = pods.write(d, pods.manifests([pod("db")]))
    assert removed == ["talos-web.yaml"]
    assert sorted(p.name for p in d.iterdir()) == ["admin.yaml", "talos-db.yaml"]
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("bad, where, message", [
    ({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a", "image": "i"}]}},
     "machine.pods[1].metadata.name", "needs a name"),
    ({**pod("x"), "spec": {"containers": []}}, "machine.pods[1].spec.containers",
     "at least one container"),
    ({**pod("x"), "spec": {}}, "machine.pods[1].spec.containers", "at least one container"),
    ({**pod("x"), "kind": "Deployment"}, "machine.pods[1].kind", "must be 'Pod'"),
    (pod("Bad_Name"), "machine.pods[1].metadata.name", "not a valid pod name"),
    (pod("x", containers=[{"name": "a"}]), "machine.pods[1].spec.containers[0].image",
     "needs an image"),
    (pod("x", containers=[{"name": "a", "image": "i"}, {"name": "a", "image": "i"}]),
     "machine.pods[1].spec.containers[1].name", "used twice"),
    (pod("x", containers=[{"name": "a", "image": "i", "command": "/bin/app"}]),
     "machine.pods[1].spec.containers[0].command", "list of strings"),
    (pod("ok"), "machine.pods[1].metadata.name", "used twice (also pods[0])"),
    ("just text", "machine.pods[1]", "must be a mapping"),
])
def test_bad_manifests_name_the_pod_and_field(bad, where, message):
    """A pod the kubelet could not run is left out with a note naming its index and field;
    the good one is still written (Talos does not refuse machine.pods)."""
    config = json.loads(FIXTURE.read_text())
    config["machine"]["pods"] = [pod("ok"), bad]
    prepared = prepare(config, Layout(), NODE_ADDRS)
    assert list(prepared.pods) == ["talos-ok.yaml"]
    found = [n for n in prepared.notes if n.startswith(f"{where}: ")]
    assert found and message in found[0] and "not written" in found[0], prepared.notes


def test_prep_writes_pods_into_the_static_pod_path(tmp_path):
    """staticPodPath in kubelet.yaml is where the pods land; a config without them empties it."""
    config = json.loads(FIXTURE.read_text())
    config["machine"]["pods"] = [pod("web", hostNetwork=True)]
    layout = Layout(etc=tmp_path / "etc/kubernetes", var_lib=tmp_path / "var/lib/kubelet")
    assert write_files(prepare(config, layout, NODE_ADDRS), layout) == []
    static = yaml.safe_load(layout.config.read_text())["staticPodPath"]
    assert static == str(layout.manifests)
    assert [p.name for p in layout.manifests.iterdir()] == ["talos-web.yaml"]
    del config["machine"]["pods"]
    notes = write_files(prepare(config, layout, NODE_ADDRS), layout)
    assert list(layout.manifests.iterdir()) == [] and "talos-web.yaml" in notes[0]
