"""Configuring a node through its API (issue 19), end to end on one VM and its disk.

Boot 1 has no talos.config= and a blank disk: maintenance mode (the console shows the
key's fingerprint), `osctl --insecure` lists the disk, refuses reboot, refuses a wrong
fingerprint and an invalid config (line and column), then applies worker.yaml: the same
boot goes on to containerd and the kubelet, and the API turns to mTLS with the config's
CA. On that node: apply-config auto (sysctl, hostname, registry mirror, kubelet node
label) live and checked from outside, a new install disk refused in auto, a try that
reverts after 30 s, a staged change that only shows after `osctl reboot`.
Boot 2 uses the same disk with talos.config= pointing at a server that is gone (QEMU's
guestfwd to a closed port): the node boots from the config on its STATE partition, with
the staged change, and reaches ready. Tests run in file order and share the VMs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e import nodeapi
from tests.e2e.conftest import UserdataServer
from tests.e2e.nodeapi import BOOT_TIMEOUT
from tests.e2e.qemu import free_port
from tests.e2e.run_node import config_for_node
from tests.e2e.test_node_e2e import standin_image  # noqa: F401 - the image with the stand-in kubelet

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LABEL = "example.org/zone=b"


def insecure(ctx: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "talos_init.osctl", "--insecure", "-n",
                           f"127.0.0.1:{ctx['vm'].spec.api_port}", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def osctl(ctx: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return nodeapi.osctl(ctx["osctlconfig"], ctx["vm"].spec.api_port, *args, timeout=timeout)


def ok(ctx: dict, *args: str) -> str:
    return nodeapi.ok(ctx["osctlconfig"], ctx["vm"].spec.api_port, *args)


def hostname(ctx: dict) -> str:
    return json.loads(ok(ctx, "-o", "json", "version"))["hostname"]


def starts(ctx: dict, sid: str) -> int:
    """How often the service was started in this boot (requested restarts included)."""
    return sum(1 for e in nodeapi.events(ctx["osctlconfig"], ctx["vm"].spec.api_port)
               if e.get("kind") == "service" and e.get("name") == sid
               and e.get("state") == "starting")


def until(what: str, check, timeout: float = 120, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        time.sleep(every)


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> dict:
    """configs/worker.yaml with a generated machine CA (apid needs its key) and osctlconfig."""
    pki = tmp_path_factory.mktemp("pki")
    body, osctlconfig = config_for_node((REPO / "configs" / "worker.yaml").read_bytes(), pki)
    assert osctlconfig is not None
    files = tmp_path_factory.mktemp("configs")
    (files / "worker.yaml").write_bytes(body)
    return {"body": body, "doc": yaml.safe_load(body), "osctlconfig": osctlconfig, "dir": files}


def variant(worker: dict, name: str, change) -> Path:
    doc = json.loads(json.dumps(worker["doc"]))
    change(doc)
    path = worker["dir"] / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def node(module_boot, standin_image, worker) -> dict:  # noqa: F811
    vm = module_boot(standin_image, api=True)  # no talos.config=, a blank disk
    m = vm.wait_for(r"certificate fingerprint \(SHA-256 SPKI\): (\S+)", BOOT_TIMEOUT)
    return {"vm": vm, "fingerprint": m.group(1), "osctlconfig": worker["osctlconfig"],
            "disk": vm.disk_path}


def test_maintenance_mode_serves_disks_and_refuses_the_rest(node):
    assert "MAINTENANCE MODE" in node["vm"].console
    r = until("the maintenance API", lambda: (lambda r: r if r.returncode == 0 else None)(
        insecure(node, "--cert-fingerprint", node["fingerprint"], "-o", "json", "disks")))
    disks = json.loads(r.stdout)
    vda = next(d for d in disks if d["name"] == "vda")
    assert vda["size"] == 1024 << 20 and vda["transport"] == "virtio", vda
    r = insecure(node, "version")
    assert r.returncode == 0 and f"(SHA-256 SPKI) {node['fingerprint']}, not checked" in r.stderr
    r = insecure(node, "reboot")
    assert r.returncode == 1 and "node is in maintenance mode" in r.stderr, r.stderr
    assert not node["vm"].exited
    r = insecure(node, "--cert-fingerprint", "A" * 43 + "=", "version")
    assert r.returncode == 1 and "does not match --cert-fingerprint" in r.stderr, r.stderr


def test_invalid_config_is_refused_with_line_and_column(node, worker):
    bad = worker["dir"] / "bad.yaml"
    text = worker["body"].decode().replace("type: worker", "type: wroker", 1)
    bad.write_text(text)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "wroker" in t)
    r = insecure(node, "--cert-fingerprint", node["fingerprint"], "apply-config", "-f", str(bad))
    assert r.returncode == 1, r.stdout
    assert re.search(rf"{re.escape(str(bad))}:{line}:\d+: machine\.type: 'wroker'", r.stderr), r.stderr
    assert insecure(node, "version").returncode == 0  # still in maintenance mode


def test_applied_config_lets_the_same_boot_reach_the_kubelet(node, worker):
    r = insecure(node, "--cert-fingerprint", node["fingerprint"], "apply-config", "-f",
                 str(worker["dir"] / "worker.yaml"))
    assert r.returncode == 0 and "config applied (worker)" in r.stdout, r.stdout + r.stderr
    nodeapi.wait_api(node["osctlconfig"], node["vm"].spec.api_port, vm=node["vm"])  # mTLS now
    nodeapi.wait_state(node["osctlconfig"], node["vm"].spec.api_port, "containerd", {"ready"})
    nodeapi.wait_state(node["osctlconfig"], node["vm"].spec.api_port, "kubelet", {"ready"})
    assert "reboot: Restarting system" not in node["vm"].console
    assert node["vm"].console.count("Linux version") == 1  # one kernel start: no reboot
    version = json.loads(until("the stored config", lambda: (lambda r: r.stdout if r.returncode == 0
                                                             and '"current": {' in r.stdout else None)(
        osctl(node, "-o", "json", "get", "configversion"))))
    assert version["current"]["mode"] == "maintenance", version
    node["boot_id"] = ok(node, "read", "/proc/sys/kernel/random/boot_id")


def test_auto_applies_sysctl_hostname_mirror_and_label_live(node, worker):
    def change(doc: dict) -> None:
        m = doc["machine"]
        m["sysctls"]["vm.max_map_count"] = "262144"
        m["network"]["hostname"] = "e2e-live"
        m["registries"] = {"mirrors": {"docker.io": {"endpoints": ["http://10.0.2.2:5000"]}}}
        m["kubelet"]["extraArgs"]["node-labels"] += "," + LABEL
    before = starts(node, "kubelet")
    r = osctl(node, "apply-config", "-f", str(variant(worker, "live.yaml", change)))
    assert r.returncode == 0, r.stderr
    assert "changed machine.network.hostname (add, live)" in r.stdout, r.stdout
    assert "restarted: machine-setup, kubelet" in r.stdout, r.stdout
    until("the new hostname", lambda: hostname(node) == "e2e-live")
    until("the sysctl", lambda: ok(node, "read", "/proc/sys/vm/max_map_count") == "262144\n")
    hosts = until("the mirror's hosts.toml", lambda: (lambda r: r.stdout if r.returncode == 0
                                                      else None)(
        osctl(node, "read", "/etc/containerd/certs.d/docker.io/hosts.toml")))
    assert "http://10.0.2.2:5000" in hosts
    until("the kubelet restarted", lambda: starts(node, "kubelet") > before)
    nodeapi.wait_state(node["osctlconfig"], node["vm"].spec.api_port, "kubelet", {"ready"})
    record = json.loads(ok(node, "read", "/var/lib/kubelet/standin-record.json"))
    assert LABEL in record["flags"]["node-labels"][-1].split(","), record["flags"]
    assert ok(node, "read", "/proc/sys/kernel/random/boot_id") == node["boot_id"]  # no reboot
    node["live"] = variant(worker, "live.yaml", change)


def test_a_new_install_disk_is_refused_in_auto_with_the_hint(node, worker):
    path = variant(worker, "disk.yaml", lambda d: d["machine"]["install"].__setitem__("disk", "/dev/vdb"))
    r = osctl(node, "apply-config", "-f", str(path), "--mode", "auto")
    assert r.returncode == 1
    assert "machine.install.disk cannot change without a reboot" in r.stderr, r.stderr
    assert "--mode staged, then osctl reboot" in r.stderr


def test_try_mode_hostname_is_rolled_back_after_30s(node, worker):
    assert "live" in node, "needs the auto test's config"
    path = variant(worker, "try.yaml", lambda d: (
        d["machine"]["sysctls"].__setitem__("vm.max_map_count", "262144"),
        d["machine"]["network"].__setitem__("hostname", "e2e-try"),
        d["machine"].__setitem__("registries", {"mirrors": {"docker.io": {
            "endpoints": ["http://10.0.2.2:5000"]}}}),
        d["machine"]["kubelet"]["extraArgs"].__setitem__(
            "node-labels", d["machine"]["kubelet"]["extraArgs"]["node-labels"] + "," + LABEL)))
    r = osctl(node, "apply-config", "-f", str(path), "--mode", "try", "--timeout", "30s")
    assert r.returncode == 0 and "reverted unless" in r.stdout, r.stdout + r.stderr
    started = time.monotonic()
    until("the tried hostname", lambda: hostname(node) == "e2e-try")
    until("the rollback", lambda: hostname(node) == "e2e-live", timeout=120)
    assert time.monotonic() - started >= 25  # not before its 30 s (polling starts a bit late)
    assert json.loads(ok(node, "-o", "json", "get", "configversion"))["current"]["mode"] == "auto"


def test_staged_change_shows_only_after_reboot(node, worker):
    def change(doc: dict) -> None:
        m = doc["machine"]
        m["sysctls"]["vm.max_map_count"] = "300000"
        m["network"]["hostname"] = "e2e-live"
        m["registries"] = {"mirrors": {"docker.io": {"endpoints": ["http://10.0.2.2:5000"]}}}
        m["kubelet"]["extraArgs"]["node-labels"] += "," + LABEL
    r = osctl(node, "apply-config", "-f", str(variant(worker, "staged.yaml", change)),
              "--mode", "staged")
    assert r.returncode == 0 and "staged" in r.stdout, r.stderr
    assert ok(node, "read", "/proc/sys/vm/max_map_count") == "262144\n"
    assert "staged for the next boot" in ok(node, "get", "configversion")
    ok(node, "reboot")
    node["vm"].wait_exit(BOOT_TIMEOUT)


def test_reboot_without_the_config_server_boots_from_the_disk(node, module_boot, standin_image):  # noqa: F811
    """talos.config= points at a server that is gone: the stored config wins, the staged
    change is in, and the node reaches ready."""
    assert node["vm"].exited, "needs the staged test's reboot"
    gone = UserdataServer(port=free_port())  # nothing listens there: guestfwd points nowhere
    vm = module_boot(standin_image, server=gone, api=True, disk=node["disk"])
    node["vm"] = vm
    vm.wait_for(r"machine config read from the install disk \(version \d+, staged", BOOT_TIMEOUT)
    nodeapi.wait_api(node["osctlconfig"], vm.spec.api_port, vm=vm)
    nodeapi.wait_state(node["osctlconfig"], vm.spec.api_port, "kubelet", {"ready"})
    assert ok(node, "read", "/proc/sys/vm/max_map_count") == "300000\n"
    assert hostname(node) == "e2e-live"
    assert gone.requests == []
    version = json.loads(ok(node, "-o", "json", "get", "configversion"))
    assert version["current"]["mode"] == "staged" and version["staged"] is None
    history = json.loads(ok(node, "-o", "json", "get", "confighistory"))["history"]
    assert [h["mode"] for h in history][:2] == ["maintenance", "auto"], history
