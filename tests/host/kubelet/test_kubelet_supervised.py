"""The node services under the real Supervisor: userdata, containerd (real) -> kubelet (stand-in).

What the issue's e2e asks of the kubelet, shown on this host: it starts only after
containerd is ready and the config exists, gets the expected flags and files, is
ready through /healthz, and is restarted after it crashes.
"""

from __future__ import annotations

import json
import socket
import sys

from talos_init.service.definition import parse
from tests.host.realcontainerd import REPO, containerd_argv
from tests.host.service.conftest import harness  # noqa: F401  (the supervisor's own test harness)

FIXTURE = REPO / "tests/unit/kubelet/worker-effective.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _define(data: dict):
    d, errors = parse(data)
    assert not errors, errors
    return d


def test_kubelet_waits_for_containerd_is_ready_and_restarted_after_a_crash(
        harness, tmp_path, short_dir, fake_kubelet):  # noqa: F811
    """containerd ready before the kubelet starts; kubelet ready via /healthz; a crash restarts it."""
    h = harness
    config = json.loads(FIXTURE.read_text())
    config["machine"]["kubelet"] = {"extraArgs": {"max-pods": "50"}}
    staged = tmp_path / "staged.json"
    staged.write_text(json.dumps(config))
    port = _free_port()
    ctd_argv, address = containerd_argv(tmp_path, short_dir)
    userdata = _define({
        "id": "userdata", "readiness": {"exit": True}, "restart": "never",
        "argv": [sys.executable, "-c", "import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])",
                 str(staged), str(h.paths.effective_config)]})
    containerd = _define({  # as services/containerd.yaml: the daemon itself, no config needed
        "id": "containerd", "readiness": {"notify": True}, "restart": "always",
        "argv": ctd_argv, "working_directory": str(REPO), "stop": {"timeout": 20}})
    kubelet = _define({
        "id": "kubelet", "depends_on": ["containerd", "userdata"], "restart": "always",
        "backoff": {"initial": 0.2, "max": 1},
        "argv": [sys.executable, "-I", "-m", "talos_init.kubelet", "--kubelet", str(fake_kubelet),
                 "--machine-config", str(h.paths.effective_config),
                 "--etc", str(tmp_path / "etc/kubernetes"), "--var-lib", str(tmp_path / "kubelet"),
                 "--runtime-endpoint", f"unix://{address}", "--healthz-port", str(port)],
        "environment": {"KUBELET_STANDIN_RECORD": str(tmp_path / "record.json"),
                        "KUBELET_STANDIN_CRASH": str(tmp_path / "crash")},
        "readiness": {"probe": {"http": f"http://127.0.0.1:{port}/healthz", "period": 0.2,
                                "timeout": 1}},
        "working_directory": str(REPO)})
    sup = h.supervise([userdata, containerd, kubelet])
    h.wait_state("kubelet", "ready", timeout=120)

    assert h.times("containerd", "ready")[0] < h.times("kubelet", "starting")[0]
    assert h.times("userdata", "finished")[0] < h.times("kubelet", "starting")[0]
    record = json.loads((tmp_path / "record.json").read_text())
    flags = {k: v[-1] for k, v in record["flags"].items()}
    assert record["runtime_endpoint"] == f"unix://{address}"  # from kubelet.yaml
    assert flags["max-pods"] == "50" and flags["hostname-override"] == "worker-1"
    assert record["files"]["config"]["cgroupDriver"] == "cgroupfs"
    assert record["pid"] == sup.core.status["kubelet"].pid  # the launcher exec'd the kubelet

    first_pid = record["pid"]
    (tmp_path / "crash").write_text("once")
    h.wait(lambda: sup.core.status["kubelet"].restarts >= 1, timeout=60)
    h.wait_state("kubelet", "ready", timeout=60)
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["pid"] != first_pid
    row = next(s for s in sup.services() if s["id"] == "kubelet")
    assert row["state"] == "ready" and row["restarts"] == 1
    assert "255" in str(row["last_exit"])
    seq = h.sequence("kubelet")
    after_first_ready = seq[seq.index("ready") + 1:]
    assert after_first_ready == ["backoff", "starting", "running", "ready"]
