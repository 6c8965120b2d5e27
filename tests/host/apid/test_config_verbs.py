"""osctl apply-config, patch, edit and get machineconfig/configversion/confighistory
against a real apid (mutual TLS, a real control server standing in for PID 1, files
under a temp root, the config store in a directory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from talos_init.control.server import ControlServer
from talos_init.userdata import store, validate
from talos_init.userdata.configstore import Store
from tests.e2e.nodeapi import gen_cluster
from tests.host.apid.conftest import FakeSupervisor, start_apid
from tests.host.control.conftest import LoopThread

ROOT = Path(__file__).resolve().parents[3]

EDITOR = r"""
import pathlib, sys
count = pathlib.Path(sys.argv[0]).with_suffix(".count")
n = int(count.read_text()) if count.exists() else 0
count.write_text(str(n + 1))
path = pathlib.Path(sys.argv[1])
text = path.read_text()
pathlib.Path(sys.argv[0]).with_suffix(f".seen{n}").write_text(text)
if n == 0:
    text = text.replace("type: worker", "type: wroker")
else:
    text = "\n".join(l for l in text.splitlines() if not l.startswith("#")) + "\n"
    text = text.replace("type: wroker", "type: worker").replace(
        "machine:\n", "machine:\n  nodeLabels:\n    edited: \"yes\"\n", 1)
path.write_text(text)
"""


class ConfiguredNode:
    def __init__(self, tmp: Path) -> None:
        # One v1alpha1 document with the CA key: this node has no trustd to sign for it.
        gen_cluster(tmp / "gen", "demo", "https://127.0.0.1:6443")
        self.root = tmp / "root"
        self.store = Store(tmp / "store")
        worker = (tmp / "gen/worker.yaml").read_bytes()
        res = validate.parse(worker)
        assert res.config is not None, res.errors
        from talos_init.paths import Paths

        self.paths = Paths(self.root)
        store.write_config(worker, res.config.effective, self.paths.config,
                           self.paths.effective_config)
        self.lt = LoopThread()
        self.lt.thread.start()
        self.supervisor = FakeSupervisor(self.lt)
        self.supervisor.services = {s: {"id": s, "state": "ready"} for s in
                                    ("machine-setup", "kubelet", "apid", "networkd")}
        self.server = ControlServer(self.lt.loop, tmp / "init.sock")
        self.supervisor.register(self.server)
        self.lt.run(self.server.start)
        self.proc, host, port = start_apid(tmp, self.paths.effective_config, self.server.path,
                                           "--root", str(self.root),
                                           "--config-store", str(tmp / "store"))
        self.target = f"{host}:{port}"
        self.osctlconfig = tmp / "gen/osctlconfig"
        self.tmp = tmp

    def osctl(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "talos_init.osctl", "--osctlconfig",
                               str(self.osctlconfig), "-n", self.target, *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**os.environ, **(env or {})})

    def effective(self) -> dict:
        return json.loads(self.paths.effective_config.read_text())

    def wait_restarts(self, want: list[str]) -> None:
        deadline = time.monotonic() + 30
        while self.lt.run(lambda: list(self.supervisor.actions)) != want:
            assert time.monotonic() < deadline, self.supervisor.actions
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.lt.run(self.server.close)
        self.lt.stop()


@pytest.fixture
def node(tmp_path):
    n = ConfiguredNode(tmp_path)
    yield n
    n.close()


def test_patch_dry_run_then_patch_then_history(node, tmp_path):
    r = node.osctl("get", "configversion")
    assert r.returncode == 0 and "no stored config" in r.stdout, r.stdout + r.stderr
    ops = '[{"op": "add", "path": "/machine/nodeLabels", "value": {"zone": "b"}}]'
    r = node.osctl("patch", "machineconfig", "-p", ops, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would change machine.nodeLabels (add, live)" in r.stdout
    assert "would restart: kubelet" in r.stdout
    assert node.supervisor.actions == [] and "nodeLabels" not in node.effective()["machine"]
    patch = tmp_path / "sysctl.yaml"
    patch.write_text('machine:\n  sysctls:\n    vm.max_map_count: "262144"\n')
    r = node.osctl("patch", "mc", "-p", f"@{patch}", "-p", ops)
    assert r.returncode == 0, r.stderr
    assert "changed machine.sysctls" in r.stdout and "restarted: machine-setup, kubelet" in r.stdout
    node.wait_restarts(["restart machine-setup", "restart kubelet"])
    m = node.effective()["machine"]
    assert m["sysctls"]["vm.max_map_count"] == "262144" and m["nodeLabels"] == {"zone": "b"}
    r = node.osctl("get", "confighistory")
    assert r.returncode == 0 and "auto" in r.stdout and "patched config" in r.stdout, r.stdout
    r = node.osctl("-o", "json", "get", "configversion")
    cur = json.loads(r.stdout)["current"]
    assert cur["version"] == 1 and cur["sha256"] == json.loads(r.stdout)["running_sha256"]
    r = node.osctl("get", "machineconfig")
    assert r.returncode == 0 and "262144" in r.stdout
    assert "[redacted]" in r.stdout and node.store.load()["config"].decode().count("key:") >= 1


def test_a_patch_that_does_not_apply_sends_nothing(node):
    r = node.osctl("patch", "mc", "-p", '[{"op": "remove", "path": "/machine/nope"}]')
    assert r.returncode == 1 and "the patch does not apply" in r.stderr and "nothing was sent" in r.stderr
    assert node.store.load() is None


def test_edit_reopens_a_refused_config_with_its_problems(node, tmp_path):
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    r = node.osctl("edit", "machineconfig", env={"EDITOR": f"{sys.executable} {editor}"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "refused the edited config; reopening it" in r.stderr
    second = (tmp_path / "editor.seen1").read_text()
    assert "# The node refused it:" in second and "machine.type: 'wroker'" in second
    assert "changed machine.nodeLabels (add, live)" in r.stdout
    assert node.effective()["machine"]["nodeLabels"] == {"edited": "yes"}
    assert node.store.load()["source"] == "edited"


def test_unchanged_edit_cancels(node, tmp_path):
    r = node.osctl("edit", "mc", env={"EDITOR": "true"})
    assert r.returncode == 0 and "edit cancelled" in r.stdout
    assert node.store.load() is None


def test_apply_config_auto_refuses_a_new_install_disk_with_the_hint(node, tmp_path):
    text = node.paths.config.read_text().replace(
        "  type: worker\n", "  type: worker\n  install:\n    disk: /dev/vdb\n", 1)
    assert "/dev/vdb" in text
    f = tmp_path / "new.yaml"
    f.write_text(text)
    r = node.osctl("apply-config", "-f", str(f))
    assert r.returncode == 1
    assert "machine.install.disk cannot change without a reboot" in r.stderr
    assert "--mode staged, then osctl reboot" in r.stderr
    r = node.osctl("apply-config", "-f", str(f), "--mode", "staged")
    assert r.returncode == 0 and "staged" in r.stdout, r.stderr
    r = node.osctl("get", "configversion")
    assert "staged for the next boot" in r.stdout
