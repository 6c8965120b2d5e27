"""containers reads a real containerd's API (gRPC over HTTP/2 on its unix socket)."""

from __future__ import annotations

from talos_init.apid.containerd import Client, field


def create(client: Client, cid: str, image: str, pod: str) -> None:
    spec = field(1, "types.containerd.io/opencontainers/runtime-spec/1/Spec") + field(2, b"{}")
    container = (field(1, cid) + field(2, field(1, "io.kubernetes.pod.name") + field(2, pod))
                 + field(3, image) + field(4, field(1, "io.containerd.runc.v2")) + field(5, spec))
    client.call("/containerd.services.containers.v1.Containers/Create", field(1, container), "k8s.io")


def test_containers_lists_the_k8s_namespace(node, containerd):
    """`osctl containers -k` shows containerd's k8s.io containers by pod; the system namespace
    is apart."""
    create(containerd, "coredns-1", "registry.k8s.io/coredns:v1.11", "coredns-abc")
    create(containerd, "api-0", "registry.k8s.io/kube-apiserver:v1.30", "apiserver")
    config = node.osctlconfig("reader", ["os:reader"])
    r = node.osctl(config, "containers", "-k")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["POD", "NAME", "ID", "IMAGE", "PID", "STATUS"]
    assert [row.split()[:4] for row in rows] == [  # by pod; no container-name label: "-"
        ["apiserver", "-", "api-0", "registry.k8s.io/kube-apiserver:v1.30"],
        ["coredns-abc", "-", "coredns-1", "registry.k8s.io/coredns:v1.11"]]
    r = node.osctl(config, "-o", "json", "containers")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_containers_without_containerd_says_so(node):
    """With no containerd listening the call fails with 'containerd ... unreachable'."""
    r = node.osctl(node.osctlconfig("reader", ["os:reader"]), "containers")
    assert r.returncode == 1 and "containerd at" in r.stderr and "unreachable" in r.stderr, r.stderr


def test_stats_lists_services_and_containers(node, containerd):
    """stats has a row per service (with its process tree's usage) and per container."""
    import json

    create(containerd, "coredns-1", "registry.k8s.io/coredns:v1.11", "coredns-abc")
    r = node.osctl(node.osctlconfig("reader", ["os:reader"]), "-o", "json", "stats")
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in json.loads(r.stdout)}
    assert rows["containerd"]["kind"] == "service" and rows["containerd"]["processes"] >= 1
    assert rows["containerd"]["rss"] > 0
    assert rows["kubelet"]["processes"] == 0  # no pid: nothing to measure
    assert rows["k8s.io/coredns-1"] == {"kind": "container", "id": "k8s.io/coredns-1",
                                        "state": "no task", "pid": None, "cpu_time": None,
                                        "rss": None, "processes": 0}
