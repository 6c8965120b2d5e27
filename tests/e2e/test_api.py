"""osctl from the host drives a real node in QEMU through hostfwd: read, restart, reboot, shut down.

Written against the image branch's harness (tests/e2e/conftest.py: ``image``,
``module_boot``; qemu.VM with ``api=True`` forwarding 127.0.0.1:PORT to the
guest's :50000). QEMU runs with -no-reboot, so a reboot ends the VM; the test
boots the same image and config again and expects the node to answer again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.nodeapi import BOOT_TIMEOUT, gen_cluster, ok, osctl, services, wait_api, wait_state

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Path:
    return gen_cluster(tmp_path_factory.mktemp("cluster"), "e2e")


@pytest.fixture(scope="module")
def config_server(cluster):
    from tests.e2e.conftest import UserdataServer, _serve

    state = UserdataServer(body=(cluster / "worker.yaml").read_bytes())
    server = _serve(state)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def node(module_boot, image, config_server, cluster):
    vm = module_boot(image, server=config_server, api=True)
    wait_api(cluster / "osctlconfig", vm.spec.api_port)
    return vm


def test_reads_services_logs_dmesg_mounts_and_processes(node, cluster):
    """Through hostfwd osctl lists services, containerd's logs, dmesg, mounts and processes."""
    cfg, port = cluster / "osctlconfig", node.spec.api_port
    svc = wait_state(cfg, port, "containerd", {"ready"})
    assert svc["pid"]
    assert services(cfg, port)["apid"]["state"] == "ready"
    # HEALTH as a user reads it: ok for every ready service (READY=1 or probe), - for one-shots.
    table = ok(cfg, port, "services").splitlines()
    rows = {line.split()[0]: line.split() for line in table[1:]}
    ready = {sid for sid, row in rows.items() if row[1] == "ready"}
    assert {"containerd", "apid"} <= ready, table
    assert all(rows[sid][2] == "ok" for sid in ready), "\n".join(table)
    assert all(row[2] == "-" for row in rows.values() if row[1] in ("finished", "skipped")), \
        "\n".join(table)
    logs = osctl(cfg, port, "logs", "containerd", "--tail", "20")
    assert logs.returncode == 0 and "containerd" in logs.stdout, logs.stderr
    dmesg = osctl(cfg, port, "dmesg")
    assert dmesg.returncode == 0 and "Linux version" in dmesg.stdout, dmesg.stderr
    mounts = json.loads(osctl(cfg, port, "-o", "json", "mounts").stdout)
    assert {"/proc", "/sys", "/run", "/sys/fs/cgroup"} <= {m["target"] for m in mounts}
    procs = json.loads(osctl(cfg, port, "-o", "json", "ps").stdout)
    assert any(p["pid"] == 1 for p in procs) and any("containerd" in p["command"] for p in procs)
    # The timeline's /init exec time is the kernel's "Run /init" record, before Python started.
    timeline = json.loads(osctl(cfg, port, "-o", "json", "timeline").stdout)
    handoff = next(e for e in timeline if e["name"] == "kernel_handoff")
    runs = [line for line in dmesg.stdout.splitlines() if "as init process" in line]
    assert runs and abs(float(runs[0].split("]")[0].strip("[ ")) - handoff["exec_at"]) < 1e-5, \
        (handoff, runs)
    assert 0 < handoff["exec_at"] < handoff["python_started"]


def test_images_are_imported_unpacked_and_listed(node, cluster, tmp_path):
    """osctl streams a test image (OCI from a file, docker save from stdin) into the node's
    containerd; both are listed and their layer is an overlayfs snapshot on the node."""
    from tests.ociimage import HELLO_C, build_image, compile_static

    cfg, port = cluster / "osctlconfig", node.spec.api_port
    wait_state(cfg, port, "containerd", {"ready"})
    binary = compile_static(HELLO_C, tmp_path / "hello")
    oci = build_image(tmp_path / "oci.tar", "example.local/e2e/hello:1", binary=binary)
    r = osctl(cfg, port, "image", "import", str(oci), timeout=600)
    assert r.returncode == 0 and "example.local/e2e/hello:1" in r.stdout, r.stdout + r.stderr
    print(r.stdout)
    docker = build_image(tmp_path / "docker.tar", "hello:docker", binary=binary, fmt="docker",
                         compress=False)
    with open(docker, "rb") as stdin:
        r = osctl(cfg, port, "-o", "json", "image", "import", "-", stdin=stdin, timeout=600)
    assert r.returncode == 0, r.stderr
    (imported,) = json.loads(r.stdout)["images"]
    assert imported["name"] == "docker.io/library/hello:docker"
    r = osctl(cfg, port, "-o", "json", "image", "list")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {"example.local/e2e/hello:1", "docker.io/library/hello:docker"}, rows
    assert all(row["platforms"] == ["linux/amd64"] for row in rows.values())
    # Unpacked: the layer's chain ID is a committed overlayfs snapshot on the node.
    r = osctl(cfg, port, "-o", "json", "ls", "-d", "3",
              "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots")
    assert r.returncode == 0, r.stderr
    apps = [e for e in json.loads(r.stdout) if e["path"].endswith("/fs/app")]
    assert len(apps) == 1 and apps[0]["size"] == binary.stat().st_size, r.stdout
    r = osctl(cfg, port, "image", "import", str(tmp_path / "hello"), timeout=120)
    assert r.returncode == 1 and "not a tar archive" in r.stderr, r.stderr
    assert services(cfg, port)["apid"]["state"] == "ready"


def test_restarted_service_comes_back_ready(node, cluster):
    """`osctl service restart containerd` gives a new pid that becomes ready."""
    cfg, port = cluster / "osctlconfig", node.spec.api_port
    before = wait_state(cfg, port, "containerd", {"ready"})
    r = osctl(cfg, port, "service", "restart", "containerd")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        svc = services(cfg, port)["containerd"]
        if svc["state"] == "ready" and svc["pid"] != before["pid"]:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"containerd did not come back ready: {svc}")


def test_reboot_then_the_node_answers_again(node, cluster, module_boot, image, config_server):
    """`osctl reboot` ends this boot (QEMU -no-reboot exits); booted again, the node answers."""
    cfg, port = cluster / "osctlconfig", node.spec.api_port
    r = osctl(cfg, port, "reboot")
    assert r.returncode == 0 and "rebooting" in r.stdout, r.stderr
    node.wait_exit(BOOT_TIMEOUT)
    # -no-reboot turns a reset into QEMU's exit; the kernel's last line says which it was.
    assert "reboot: Restarting system" in node.console, node.console[-2000:]
    again = module_boot(image, server=config_server, api=True)
    wait_api(cfg, again.spec.api_port)
    r = osctl(cfg, again.spec.api_port, "shutdown")
    assert r.returncode == 0 and "shutting down" in r.stdout, r.stderr
    assert again.wait_exit(BOOT_TIMEOUT) == 0
