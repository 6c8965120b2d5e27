"""osctl containers -k groups CRI's containers by pod; logs -k asks apid for the CRI log."""

import io

from talos_init.osctl import output
from talos_init.osctl.__main__ import build_parser, show


def row(cid, kind, pod=None, name=None, status="running"):
    labels = {"io.cri-containerd.kind": kind}
    if pod:
        labels |= {"io.kubernetes.pod.name": pod, "io.kubernetes.pod.namespace": "default"}
    if name:
        labels["io.kubernetes.container.name"] = name
    return {"namespace": "k8s.io", "id": cid, "image": f"img-{cid}", "pid": 7, "status": status,
            "pod": pod, "labels": labels}


def test_kubernetes_table_shows_pod_then_its_containers(monkeypatch):
    """Each pod's sandbox comes first, then its containers by name; ids are cut to 13."""
    buf, table = io.StringIO(), output.table
    monkeypatch.setattr(output, "table", lambda rows, cols: table(rows, cols, out=buf))
    args = build_parser().parse_args(["containers", "-k"])
    show(args, "n", [row("c" * 64, "container", "web-n", "zeta"), row("s" * 64, "sandbox", "web-n"),
                     row("a" * 64, "container", "web-n", "alpha", "no task")], many=False)
    lines = buf.getvalue().splitlines()
    assert lines[0].split() == ["POD", "NAME", "ID", "IMAGE", "PID", "STATUS"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["default/web-n", "(sandbox)", "s" * 13], ["default/web-n", "alpha", "a" * 13],
        ["default/web-n", "zeta", "c" * 13]]
    assert lines[2].split()[-2:] == ["no", "task"]


def test_logs_k_flag_is_parsed():
    args = build_parser().parse_args(["logs", "-k", "web-n/app", "--tail", "5", "-f"])
    assert args.kubernetes and args.id == "web-n/app" and args.tail == 5 and args.follow
