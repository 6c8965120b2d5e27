"""The stand-in runs a static pod through the real containerd's CRI, as the kubelet would.

Images built here (static C binaries, no shell) are imported into the k8s.io
namespace with the node's importer (air-gapped: the pause image too, under the name
containerd's config gives it). The stand-in then runs the hostNetwork pod with
runc; the test reads it back through apid's containerd client and the CRI log
file, and finds the file the pod wrote through its hostPath volume.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from talos_init.apid import crilog
from talos_init.apid.calls import Calls
from talos_init.apid.containerd import Client, decode, field
from talos_init.containerd.config import SANDBOX_IMAGE
from talos_init.containerd import grpc
from talos_init.containerd.images import Importer
from tests.host.kubelet.conftest import STANDIN
from tests.ociimage import build_image
from tests.podprograms import APP_C, PAUSE_C, VOLUMES_C

APP_IMAGE = "example.local/talos-init/pod-app:1"
VOLUMES_IMAGE = "example.local/talos-init/pod-volumes:1"


async def collect(items, log=None) -> list[dict]:
    """All items of a finite stream; with ``log``, append two records (one split in P+F) and
    stop after the two messages they make."""
    out = []
    if log is not None:
        async def append():
            await asyncio.sleep(1)
            with open(log, "ab") as f:  # noqa: ASYNC230 (a test writing a local file)
                f.write(b"2026-01-01T00:00:00.000000000Z stdout F appended one\n"
                        b"2026-01-01T00:00:00.100000000Z stdout P appended \n")
                f.flush()
                await asyncio.sleep(0.7)
                f.write(b"2026-01-01T00:00:00.200000000Z stdout F two\n")
        task = asyncio.create_task(append())
    async with asyncio.timeout(20):
        async for item in items:
            out.append(item)
            if log is not None and len(out) == 2:
                break
    if log is not None:
        await task
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cri(sock, method: str, message: bytes = b"") -> dict:
    return decode(Client(str(sock), timeout=60).call(f"/runtime.v1.RuntimeService/{method}",
                                                     message, "k8s.io"))


def remove_all_pods(sock) -> None:
    """Shims outlive containerd: every sandbox is stopped and removed before it goes."""
    for raw in cri(sock, "ListPodSandbox").get(1, []):
        sid = decode(raw)[1][0]
        try:
            cri(sock, "StopPodSandbox", field(1, sid))
            cri(sock, "RemovePodSandbox", field(1, sid))
        except grpc.GrpcError as exc:  # a pod-network sandbox this containerd has no CNI for
            assert "cni plugin not initialized" in exc.message, exc


@pytest.fixture
def containerd_customization() -> str:
    """This host's bounding set lacks CAP_SYS_RESOURCE, so runc cannot give the pause container
    CRI's oom_score_adj -998 (runc init dies: "can't get final child's PID"). Clamping to
    containerd's own score is CRI's switch for that. An import replaces the whole CRI table, so
    the sandbox image is named again."""
    return (f'[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "{SANDBOX_IMAGE}"\n'
            "  restrict_oom_score_adj = true\n")


@pytest.fixture
def images(containerd, tmp_path):
    importer = Importer(grpc.Client(str(containerd), timeout=120))
    for ref, source in ((APP_IMAGE, APP_C), (SANDBOX_IMAGE, PAUSE_C), (VOLUMES_IMAGE, VOLUMES_C)):
        with open(build_image(tmp_path / f"{len(ref)}.tar", ref, source_c=source), "rb") as f:
            importer.import_archive(f)


def read_pass(record) -> tuple[dict, int]:
    """The stand-in's pod record and which pass wrote it: each pass replaces the file (write
    new, rename), so a new inode is a new pass."""
    with open(record) as f:
        return json.load(f), os.fstat(f.fileno()).st_ino


def wait_next_pass(record, seen: int, timeout: float = 30) -> dict:
    """The record of the first pass that started after the one that wrote inode ``seen``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, written = read_pass(record)
        if written != seen:
            return state
        time.sleep(0.1)
    raise AssertionError(f"no sync pass in {timeout} s after the pod ran")


def pod(name: str, host_network: bool, data: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"hostNetwork": host_network, "containers": [{
                "name": "app", "image": APP_IMAGE, "command": ["/app"], "args": ["/data/out"],
                "env": [{"name": "GREETING", "value": "hi from the manifest"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data",
                             "hostPath": {"path": data, "type": "DirectoryOrCreate"}}]}}


VOLUMES_POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vols"},
    "spec": {"hostNetwork": True, "containers": [{
        "name": "reader", "image": VOLUMES_IMAGE, "command": ["/app"],
        "args": ["/cache/note", "/var/run/secrets/tokens/token", "0"],
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"},
                         {"name": "token", "mountPath": "/var/run/secrets/tokens",
                          "readOnly": True}]}],
        "volumes": [{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                    {"name": "token", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}]}}]}}


def test_hostnetwork_static_pod_runs_through_cri(tmp_path, containerd, images):
    manifests, data, logs = tmp_path / "manifests", tmp_path / "data", tmp_path / "log/pods"
    manifests.mkdir()
    (manifests / "talos-web.yaml").write_text(json.dumps(pod("web", True, str(data))))
    (manifests / "talos-netpod.yaml").write_text(json.dumps(pod("netpod", False, str(data))))
    (manifests / "talos-vols.yaml").write_text(json.dumps(VOLUMES_POD))
    root = tmp_path / "kubelet-root"
    config = tmp_path / "kubelet.yaml"
    config.write_text(json.dumps({"kind": "KubeletConfiguration", "staticPodPath": str(manifests),
                                  "healthzPort": free_port()}))
    (tmp_path / "kubeconfig").write_text(json.dumps({"kind": "Config"}))
    record = tmp_path / "pods.json"
    env = dict(os.environ, KUBELET_STANDIN_RECORD=str(tmp_path / "record.json"),
               KUBELET_STANDIN_CRASH=str(tmp_path / "crash"), KUBELET_STANDIN_PODS=str(record),
               KUBELET_STANDIN_LOG_ROOT=str(logs), KUBELET_STANDIN_SYNC="1")
    # The venv's python: it has talos_init and h2 (the image's python has them too).
    proc = subprocess.Popen([sys.executable, str(STANDIN), f"--config={config}",
                             f"--kubeconfig={tmp_path / 'kubeconfig'}",
                             f"--container-runtime-endpoint=unix://{containerd}",
                             "--hostname-override=Node1", f"--root-dir={root}"],
                            env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline, state, written = time.monotonic() + 120, {}, None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            state, written = read_pass(record) if record.exists() else ({}, None)
            if (state.get("web-node1") or {}).get("containers") and (data / "out").exists() \
                    and (state.get("vols-node1") or {}).get("containers") \
                    and "error" in state.get("netpod-node1", {}):
                break
            if "runc create failed" in str(state):
                break
            time.sleep(0.5)
        assert "containers" in state.get("web-node1", {}), state
        cid = state["web-node1"]["containers"]["app"]
        # A pod network: containerd asks CNI, which this test's containerd has no config for.
        assert "cni" in state["netpod-node1"]["error"].lower(), state

        listed = {c["id"]: c for c in Client(str(containerd)).containers("k8s.io")}
        app = listed[cid]
        assert app["status"] == "running" and app["image"] == APP_IMAGE, app
        assert app["pod"] == "web-node1" and app["labels"]["io.kubernetes.container.name"] == "app"
        sandbox = state["web-node1"]["sandbox"]
        assert listed[sandbox]["image"] == SANDBOX_IMAGE and listed[sandbox]["status"] == "running"
        assert (data / "out").read_text() == "written by the pod\n"
        # The pod shares the host's network namespace (hostNetwork), not a new one.
        assert os.readlink(f"/proc/{app['pid']}/ns/net") == os.readlink("/proc/self/ns/net")

        (log,) = logs.glob("default_web-node1_*/app/0.log")
        deadline = time.monotonic() + 30
        while "pod stderr" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = log.read_text().splitlines()
        assert [line.split(" ", 3)[1:] for line in lines if "stdout" in line] == [
            ["stdout", "F", f"pod line {i}"] for i in range(3)], lines
        assert any(line.endswith("stderr F pod stderr hi from the manifest") for line in lines)

        # apid finds the log file through CRI's metadata and reads it as osctl logs -k asks.
        assert crilog.log_path(Client(str(containerd)), cid) == str(log)
        calls = Calls(control=None, containerd_socket=containerd)  # type: ignore[arg-type]
        got = asyncio.run(collect(calls.logs({"id": "web-node1/app", "kubernetes": True})))
        # stdout and stderr are copied apart: each keeps its order, not their interleaving.
        assert [m["line"] for m in got if m["stream"] == "stdout"] == [
            "pod line 0", "pod line 1", "pod line 2"], got
        assert [m["line"] for m in got if m["stream"] == "stderr"] == [
            "pod stderr hi from the manifest"], got
        assert len(got) == 4, got
        last = got[-1]["line"]
        got = asyncio.run(collect(calls.logs({"id": cid[:12], "kubernetes": True, "tail": 1})))
        assert [m["line"] for m in got] == [last]
        followed = asyncio.run(collect(
            calls.logs({"id": cid, "kubernetes": True, "tail": 0, "follow": True}), log=log))
        assert [m["line"] for m in followed] == ["appended one", "appended two"], followed

        # The in-memory emptyDir and the projected token: tmpfs mounts made with `mount`, under
        # the kubelet's root as the real one lays them out, read by the pod.
        vols = state["vols-node1"]
        (vlog,) = logs.glob("default_vols-node1_*/reader/0.log")
        deadline = time.monotonic() + 30
        while "projected token" not in vlog.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        vlines = [line.split(" ", 3)[3] for line in vlog.read_text().splitlines()]
        assert "emptyDir: kept in memory (tmpfs)" in vlines, vlines
        assert "projected token: eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0 (tmpfs)" in vlines, vlines
        uid = vlog.parent.parent.name.rsplit("_", 1)[1]
        volumes = root / "pods" / uid / "volumes"
        mounts = {line.split()[1]: line.split()[2]
                  for line in Path("/proc/self/mounts").read_text().splitlines()}
        empty = volumes / "kubernetes.io~empty-dir/cache"
        projected = volumes / "kubernetes.io~projected/token"
        assert mounts.get(str(empty)) == "tmpfs" and mounts.get(str(projected)) == "tmpfs", vols
        assert (empty / "note").read_text() == "kept in memory\n"
        assert os.statvfs(empty).f_blocks * os.statvfs(empty).f_frsize == 8 * 2**20

        # A later pass finds the pod running and leaves it alone.
        again = wait_next_pass(record, written)
        assert again["web-node1"]["containers"]["app"] == cid, again
        # The manifests go: the stand-in stops the pods and unmounts their volumes with umount.
        (manifests / "talos-web.yaml").unlink()
        (manifests / "talos-vols.yaml").unlink()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = Client(str(containerd)).containers("k8s.io")
            if all(c["status"] != "running" for c in status):
                break
            time.sleep(0.5)
        assert all(c["status"] != "running" for c in status), status
        deadline = time.monotonic() + 30
        while (root / "pods" / uid).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not (root / "pods" / uid).exists()
        assert str(empty) not in Path("/proc/self/mounts").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        remove_all_pods(containerd)
    assert proc.returncode == 0, err
    assert "volumes unmounted and removed" in err, err
