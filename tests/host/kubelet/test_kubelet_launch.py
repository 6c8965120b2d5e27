"""The kubelet launcher prepares files and execs the kubelet (the stand-in) next to a real containerd."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.host.realcontainerd import REPO, stop, wait_ready

FIXTURE = REPO / "tests/unit/kubelet/worker-effective.json"


def _finish(proc: subprocess.Popen) -> str:
    """Wait for a launch that is expected to exit by itself; killed only if it hangs."""
    try:
        return proc.communicate(timeout=60)[0].decode()
    except subprocess.TimeoutExpired:
        return stop(proc).decode() + "\n(killed: did not exit within 60 s)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, kubelet, endpoint, config: dict, notify_path, port, extra_env=None):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    argv = [sys.executable, "-I", "-m", "talos_init.kubelet", "--kubelet", str(kubelet),
            "--machine-config", str(cfg), "--etc", str(tmp_path / "etc/kubernetes"),
            "--var-lib", str(tmp_path / "var/lib/kubelet"),
            "--runtime-endpoint", f"unix://{endpoint}", "--healthz-port", str(port)]
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path),
               KUBELET_STANDIN_RECORD=str(tmp_path / "record.json"),
               KUBELET_STANDIN_CRASH=str(tmp_path / "crash"), **(extra_env or {}))
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def notify(short_dir):
    path = short_dir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield sock, path
    finally:
        sock.close()


def _config(**machine_kubelet) -> dict:
    config = json.loads(FIXTURE.read_text())
    config["machine"]["kubelet"] = machine_kubelet
    return config


def test_standin_reaches_ready_through_the_launcher(tmp_path, containerd, fake_kubelet, notify):
    """Same pid, the stand-in gets our flags and files, sends READY=1 and serves /healthz."""
    sock, path = notify
    port = _free_port()
    config = _config(extraArgs={"rotate-server-certificates": "true"},
                     nodeIP={"validSubnets": ["127.0.0.0/8"]})  # found through real netlink
    proc = _launch(tmp_path, fake_kubelet, containerd, config, path, port)
    try:
        wait_ready(sock, 60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert r.status == 200 and r.read() == b"ok"
        record = json.loads((tmp_path / "record.json").read_text())
        assert record["pid"] == proc.pid  # exec'd: the supervisor's pid is the kubelet's
        flags = {k: v[-1] for k, v in record["flags"].items()}
        assert "container-runtime-endpoint" not in flags  # deprecated: the config says it
        assert record["files"]["config"]["containerRuntimeEndpoint"] == f"unix://{containerd}"
        assert record["runtime_endpoint"] == f"unix://{containerd}"
        assert flags["node-ip"] == "127.0.0.1"
        assert flags["rotate-server-certificates"] == "true"
        assert flags["hostname-override"] == "worker-1" and record["node"] == "worker-1"
        assert record["files"]["config"]["cgroupDriver"] == "cgroupfs"
        assert record["files"]["bootstrap-kubeconfig"]["users"][0]["user"]["token"] == \
            config["cluster"]["token"]
        assert record["files"]["ca"]["path"] == str(tmp_path / "etc/kubernetes/pki/ca.crt")
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out.decode(errors="replace")


def test_crash_on_request_then_clean_restart(tmp_path, containerd, fake_kubelet, notify):
    """Told to crash once, the stand-in dies with 255; started again it is ready (what a restart does)."""
    sock, path = notify
    port = _free_port()
    proc = _launch(tmp_path, fake_kubelet, containerd, _config(), path, port)
    try:
        wait_ready(sock, 60)
        (tmp_path / "crash").write_text("once")
        assert proc.wait(timeout=30) == 255
        assert not (tmp_path / "crash").exists()
    finally:
        stop(proc)
    again = _launch(tmp_path, fake_kubelet, containerd, _config(), path, port)
    try:
        wait_ready(sock, 60)
    finally:
        stop(again)
    assert again.returncode == 0


def test_unknown_flag_fails_loudly(tmp_path, containerd, fake_kubelet, notify):
    """An extraArg the kubelet does not know makes it exit 1 naming the flag, as the real one does."""
    _, path = notify
    proc = _launch(tmp_path, fake_kubelet, containerd, _config(extraArgs={"no-such-flag": "1"}),
                   path, _free_port())
    out = _finish(proc)
    assert proc.returncode == 1 and "unknown flag: --no-such-flag" in out


def test_invalid_node_name_is_fatal(tmp_path, containerd, fake_kubelet, notify):
    """A node name the API server would refuse ("(none)": no hostname) stops the stand-in, named."""
    _, path = notify
    proc = _launch(tmp_path, fake_kubelet, containerd,
                   _config(extraArgs={"hostname-override": "(none)"}), path, _free_port())
    out = _finish(proc)
    assert proc.returncode == 1, out
    assert "node name '(none)' (from --hostname-override) is not a valid DNS-1123" in out, out
    assert not (tmp_path / "record.json").exists()


def test_protected_flag_is_refused_before_exec(tmp_path, containerd, fake_kubelet, notify):
    """extraArgs overriding --container-runtime-endpoint is an error naming it; the kubelet never starts."""
    _, path = notify
    proc = _launch(tmp_path, fake_kubelet, containerd,
                   _config(extraArgs={"container-runtime-endpoint": "unix:///tmp/x.sock"}),
                   path, _free_port())
    out = _finish(proc)
    assert proc.returncode == 1 and "--container-runtime-endpoint cannot be overridden" in out
    assert not (tmp_path / "record.json").exists()


def test_no_containerd_socket_is_fatal(tmp_path, fake_kubelet, notify, short_dir):
    """Without the containerd socket the stand-in exits 1 saying it cannot reach the runtime."""
    _, path = notify
    proc = _launch(tmp_path, fake_kubelet, short_dir / "absent.sock", _config(), path, _free_port())
    out = _finish(proc)
    assert proc.returncode == 1 and "failed to connect to the container runtime" in out


def test_missing_kubelet_binary_exits_69(tmp_path, notify):
    """No kubelet binary: exit 69 with the 'skipped: no kubelet binary' reason for the supervisor."""
    _, path = notify
    proc = _launch(tmp_path, tmp_path / "nope/kubelet", Path("/nonexistent.sock"), _config(), path, 1)
    out = _finish(proc)
    assert proc.returncode == 69 and "skipped: no kubelet binary in this image" in out


def test_standin_defaults_a_missing_runtime_endpoint_as_the_kubelet_does(tmp_path, notify):
    """No flag and no containerRuntimeEndpoint: the v1beta1 default, containerd's own socket."""
    _, path = notify
    (tmp_path / "kubelet.yaml").write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}))
    (tmp_path / "kubeconfig").write_text(json.dumps({"apiVersion": "v1", "kind": "Config"}))
    argv = [sys.executable, str(REPO / "tests/kubelet_standin/kubelet.py"),
            f"--config={tmp_path / 'kubelet.yaml'}", f"--kubeconfig={tmp_path / 'kubeconfig'}",
            "--hostname-override=node-a"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, NOTIFY_SOCKET=str(path),
                                     KUBELET_STANDIN_RECORD=str(tmp_path / "record.json"),
                                     KUBELET_STANDIN_CRASH=str(tmp_path / "crash")),
                            start_new_session=True)
    out = _finish(proc)
    if Path("/run/containerd/containerd.sock").exists():
        pytest.fail("this host runs a containerd at the default socket: the test cannot tell")
    assert proc.returncode == 1, out
    assert "failed to connect to the container runtime at /run/containerd/containerd.sock" in out
