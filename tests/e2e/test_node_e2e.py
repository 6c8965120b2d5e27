"""A Kubernetes node end to end (issue 8): /var on the data disk, sysctls, kubelet, reboot, fsck.

Two boots of one image built with ``--kubelet tests/kubelet_standin/kubelet.py``
share one raw disk. Boot 1 gets a blank disk and a config whose
machine.files writes a marker under /var and makes the kubelet crash once;
``osctl reboot`` ends it (QEMU runs with -no-reboot). Boot 2 reuses the disk
with a config WITHOUT those files, so the marker can only come from the disk;
``osctl shutdown`` powers it off and the host runs ``e2fsck -fn`` on the
partition. Boot 1's config also has machine.pods: one hostNetwork static pod
whose image (and the pause image) the test builds from C and imports with
``osctl image import``; the stand-in kubelet runs it through CRI and runc.
A second static pod (issue 23) is on the default pod network with a hostPort
(portmap: iptables-nft and nf_nat, loaded on demand) that QEMU forwards from
the host, and reads an in-memory emptyDir and a projected token volume the
stand-in mounts with the image's `mount` program.
Tests run in file order and share the module's VMs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.e2e import nodeapi
from tests.e2e.nodeapi import BOOT_TIMEOUT
from tests.e2e.conftest import BUILD, Image, UserdataServer, _serve
from tests.e2e.run_node import config_for_node

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "kubelet_standin" / "kubelet.py"
MARKER = "/var/e2e/marker"
APP_IMAGE = "example.local/e2e/pod-app:1"
POD_DATA = "/var/e2e-pod"
STATIC_POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "e2e-app"},
    "spec": {"hostNetwork": True, "containers": [{
        "name": "app", "image": APP_IMAGE, "command": ["/app"], "args": ["/data/out"],
        "env": [{"name": "GREETING", "value": "from machine.pods"}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "hostPath": {"path": POD_DATA, "type": "DirectoryOrCreate"}}]},
}
NET_IMAGE = "example.local/e2e/pod-volumes:1"
HOST_PORT = 30080  # the pod's hostPort on the node; QEMU forwards a host port to it
NET_POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "e2e-net"},
    "spec": {"containers": [{
        "name": "srv", "image": NET_IMAGE, "command": ["/app"],
        "args": ["/cache/note", "/var/run/secrets/tokens/token", "8080"],
        "ports": [{"containerPort": 8080, "hostPort": HOST_PORT}],
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"},
                         {"name": "token", "mountPath": "/var/run/secrets/tokens",
                          "readOnly": True}]}],
        "volumes": [{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    {"name": "token", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]}}]},
}
SYSCTLS = {"net.ipv4.ip_forward": "1", "vm.max_map_count": "262144"}
HARDENING = {"kernel.kptr_restrict": "2", "kernel.dmesg_restrict": "1",
             "fs.protected_symlinks": "1",
             "kernel.unprivileged_bpf_disabled": "1", "user.max_user_namespaces": "0"}


# The tests share one dict per boot: the VM and the osctlconfig that reaches it.
def osctl(ctx: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return nodeapi.osctl(ctx["osctlconfig"], ctx["vm"].spec.api_port, *args, timeout=timeout)


def ok(ctx: dict, *args: str) -> str:
    return nodeapi.ok(ctx["osctlconfig"], ctx["vm"].spec.api_port, *args)


def wait_api(ctx: dict) -> None:
    nodeapi.wait_api(ctx["osctlconfig"], ctx["vm"].spec.api_port, vm=ctx["vm"])


def services(ctx: dict) -> dict[str, dict]:
    return nodeapi.services(ctx["osctlconfig"], ctx["vm"].spec.api_port)


def wait_ready(ctx: dict, sid: str, timeout: float = 300) -> dict:
    return nodeapi.wait_state(ctx["osctlconfig"], ctx["vm"].spec.api_port, sid, {"ready"}, timeout)


def events(ctx: dict) -> list[dict]:
    return nodeapi.events(ctx["osctlconfig"], ctx["vm"].spec.api_port)


@pytest.fixture(scope="module")
def standin_image() -> Image:
    """The image built with the builder's --kubelet option (its own build dir, cached by digest)."""
    from initramfs.build import ensure_built

    out = BUILD / "standin"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "cache").exists():  # share the downloaded kernel package with the main build
        (BUILD / "cache").mkdir(parents=True, exist_ok=True)
        (out / "cache").symlink_to(BUILD / "cache")
    ensure_built(out, kubelet=STANDIN)
    return Image(out / "vmlinuz", out / "initramfs.img", out / "manifest.txt",
                 (out / "input-digest").read_text())


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict:
    """configs/worker.yaml with a generated machine CA, sysctls, and (boot 1 only) machine.files."""
    pki = tmp_path_factory.mktemp("pki")
    body, osctlconfig = config_for_node((REPO / "configs" / "worker.yaml").read_bytes(), pki)
    assert osctlconfig is not None
    doc = yaml.safe_load(body)
    doc["machine"]["sysctls"] = dict(SYSCTLS)
    second = yaml.safe_dump(doc, sort_keys=False).encode()
    marker = uuid.uuid4().hex
    doc["machine"]["pods"] = [STATIC_POD, NET_POD]
    doc["machine"]["files"] = [
        {"path": MARKER, "content": marker, "permissions": 0o600, "op": "create"},
        {"path": "/var/lib/kubelet/standin-crash", "content": "once", "permissions": 0o600,
         "op": "create"},
    ]
    first = yaml.safe_dump(doc, sort_keys=False).encode()
    ca_pem = base64.b64decode(doc["cluster"]["ca"]["crt"])
    return {"first": first, "second": second, "marker": marker, "osctlconfig": osctlconfig,
            "cluster_ca_sha256": hashlib.sha256(ca_pem).hexdigest()}


@pytest.fixture(scope="module")
def server(configs):
    state = UserdataServer(body=configs["first"])
    srv = _serve(state)
    yield state
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def node(module_boot, standin_image, server, configs) -> dict:
    """Boot 1 on a blank disk; a dict the later tests update with boot 2 (same disk)."""
    from tests.e2e.qemu import free_port

    host_port = free_port()
    vm = module_boot(standin_image, server=server, api=True, forwards=((host_port, HOST_PORT),))
    ctx = {"vm": vm, "osctlconfig": configs["osctlconfig"], "disk": vm.disk_path, "boot": 1,
           "host_port": host_port}
    wait_api(ctx)
    return ctx


def test_first_boot_partitions_formats_and_mounts_var(node):
    """The blank data disk is partitioned, formatted ext4 and mounted at /var."""
    wait_ready(node, "containerd")
    report = json.loads(ok(node, "read", "/run/talos/var.json"))
    assert report["mode"] == "disk" and report["action"] == "partition", report
    assert report["found_by"] == "config", report  # a blank disk waits for install.disk
    mounts = {m["target"]: m for m in json.loads(ok(node, "-o", "json", "mounts"))}
    assert "/var" in mounts, sorted(mounts)
    var = mounts["/var"]
    assert var["source"] == report["partition"] and var["source"].startswith("/dev/vda"), var
    assert var.get("fstype", var.get("type")) == "ext4", var


def test_hardening_and_machine_sysctls_read_back(node):
    """The KSPP sysctls and the config's machine.sysctls hold on the running node."""
    wait_ready(node, "containerd")
    for name, want in {**HARDENING, **SYSCTLS}.items():
        got = ok(node, "read", "/proc/sys/" + name.replace(".", "/")).strip()
        assert got == want, f"{name} = {got!r}, want {want!r}"


def test_kubelet_starts_after_containerd_and_network_are_ready(node):
    """The kubelet's first start comes after containerd and networkd report ready."""
    wait_ready(node, "kubelet")
    evs = [e for e in events(node) if e["kind"] == "service"]

    def first(name: str, states: set[str]) -> float:
        ts = [e["t"] for e in evs if e["name"] == name and e["state"] in states]
        assert ts, f"no {name} event in {sorted(states)}: {[e for e in evs if e['name'] == name]}"
        return min(ts)

    started = first("kubelet", {"starting", "running"})
    assert first("containerd", {"ready"}) < started
    assert first("networkd", {"ready"}) < started
    assert first("var", {"finished"}) < started


def test_kubelet_gets_its_flags_and_files(node, configs):
    """The stand-in recorded our flags, the config's extraArgs and node IP, and the cluster CA."""
    wait_ready(node, "kubelet")
    record = json.loads(ok(node, "read", "/var/lib/kubelet/standin-record.json"))
    flags = {k: v[-1] for k, v in record["flags"].items()}
    assert flags["config"] == "/etc/kubernetes/kubelet.yaml", flags
    assert flags["bootstrap-kubeconfig"] == "/etc/kubernetes/bootstrap-kubeconfig", flags
    endpoint = record["runtime_endpoint"]  # kubelet.yaml's containerRuntimeEndpoint
    assert "container-runtime-endpoint" not in flags, flags
    assert re.fullmatch(r"unix:///\S*containerd\S*\.sock", endpoint), flags
    assert flags["node-ip"] == "10.0.2.15", flags
    assert "example.org/pool=qemu" in flags["node-labels"].split(","), flags
    assert record["files"]["config"]["kind"] == "KubeletConfiguration"
    # No hostname in the config, QEMU's DHCP or the cmdline: networkd generated the node's name.
    hostname = json.loads(ok(node, "-o", "json", "version"))["hostname"]
    assert re.fullmatch(r"talos-[a-z0-9]{3}-[a-z0-9]{3}", hostname), hostname
    assert record["node"] == hostname and "hostname-override" not in flags, record
    assert ok(node, "read", "/etc/hostname") == hostname + "\n"
    networkd = ok(node, "logs", "networkd")
    generated = re.search(r"hostname_generated hostname=(\S+) source=(\S+) value=(\S+)", networkd)
    # QEMU's SMBIOS UUID is all zeros without -uuid: the MAC of eth0 (QEMU's default) is used.
    assert generated and generated.groups() == (hostname, "mac", "52:54:00:12:34:56"), networkd
    assert record["files"]["ca"]["sha256"] == configs["cluster_ca_sha256"]
    server = record["files"]["bootstrap-kubeconfig"]["clusters"][0]["cluster"]["server"]
    assert server == "https://10.0.2.15:6443"


def test_kubelet_is_restarted_after_it_crashes(node):
    """machine.files made the kubelet crash once: the supervisor restarted it and it is ready."""
    svc = wait_ready(node, "kubelet")
    assert svc["restarts"] >= 1, svc
    states = [e["state"] for e in events(node) if e["kind"] == "service" and e["name"] == "kubelet"]
    assert "ready" in states, states
    assert {"failed", "backoff"} & set(states[:states.index("ready")]), states
    assert ok(node, "ls", "/var/lib/kubelet").find("standin-crash") < 0


def k8s_containers(ctx: dict) -> list[dict]:
    return json.loads(ok(ctx, "-o", "json", "containers", "-k"))


def test_static_pod_runs_from_imported_images(node, tmp_path):
    """machine.pods -> staticPodPath -> the stand-in kubelet -> CRI -> runc: the test's static
    binary (no shell), imported with the pause image, runs in its pod, is listed by
    `osctl containers -k` and its output read by `osctl logs -k`; it wrote through hostPath."""
    from talos_init.containerd.config import SANDBOX_IMAGE
    from tests.ociimage import build_image
    from tests.podprograms import APP_C, PAUSE_C

    wait_ready(node, "kubelet")
    assert "talos-e2e-app.yaml" in ok(node, "ls", "/etc/kubernetes/manifests")
    from tests.podprograms import VOLUMES_C

    for i, (ref, source) in enumerate(((SANDBOX_IMAGE, PAUSE_C), (APP_IMAGE, APP_C),
                                       (NET_IMAGE, VOLUMES_C))):
        archive = build_image(tmp_path / f"{i}.tar", ref, source_c=source)
        r = osctl(node, "image", "import", str(archive), timeout=600)
        assert r.returncode == 0 and ref in r.stdout, r.stdout + r.stderr
    deadline, app = time.monotonic() + 300, None
    while time.monotonic() < deadline and app is None:
        app = next((c for c in k8s_containers(node) if c["status"] == "running"
                    and c["labels"].get("io.kubernetes.container.name") == "app"), None)
        time.sleep(3)
    if app is None:
        state = osctl(node, "read", "/var/lib/kubelet/standin-pods.json").stdout
        logs = osctl(node, "logs", "kubelet", "--tail", "30").stdout
        raise AssertionError(f"the pod's container never ran: {k8s_containers(node)}\n"
                             f"stand-in state: {state}\nkubelet: {logs}")
    assert app["pod"].startswith("e2e-app-") and app["image"] == APP_IMAGE, app
    sandbox = [c for c in k8s_containers(node)
               if c["labels"].get("io.cri-containerd.kind") == "sandbox" and c["pod"] == app["pod"]]
    assert [c["image"] for c in sandbox] == [SANDBOX_IMAGE] and sandbox[0]["status"] == "running"
    table = ok(node, "containers", "-k")
    row = next(line for line in table.splitlines() if app["id"][:13] in line)
    assert f"default/{app['pod']}" in row and " app " in row and "running" in row, table

    deadline = time.monotonic() + 60
    while "pod stderr" not in (out := ok(node, "logs", "-k", app["id"])) \
            and time.monotonic() < deadline:
        time.sleep(2)
    # CRI copies stdout and stderr separately: each stream keeps its order, not their interleaving.
    lines = out.splitlines()
    assert [x for x in lines if x.startswith("pod line")] == ["pod line 0", "pod line 1",
                                                             "pod line 2"], out
    assert "pod stderr from machine.pods" in lines and len(lines) == 4, out
    assert ok(node, "logs", "-k", f"{app['pod']}/app", "--tail", "1") == lines[-1] + "\n"
    assert ok(node, "read", f"{POD_DATA}/out") == "written by the pod\n"
    r = osctl(node, "logs", "-k", "no-such-container")
    assert r.returncode == 1 and "no Kubernetes container" in r.stderr, r.stderr


def test_pod_network_hostport_and_memory_volumes(node):
    """Issue 23: the pod on the default network reads its in-memory emptyDir and projected
    token (tmpfs, mounted by the stand-in with the image's `mount`), which `osctl logs -k`
    shows; its hostPort answers from the host through QEMU's hostfwd, portmap's iptables
    rules having pulled the netfilter modules in. The node's kubelet prerequisites too:
    /opt/cni/bin an overlay, every cgroup controller delegated, a machine-id."""
    import socket

    wait_ready(node, "kubelet")  # the images were imported by the test before
    deadline, srv, out = time.monotonic() + 300, None, ""
    while time.monotonic() < deadline and "listening on 8080" not in out:
        srv = srv or next((c for c in k8s_containers(node) if c["status"] == "running"
                           and c["labels"].get("io.kubernetes.container.name") == "srv"), None)
        out = ok(node, "logs", "-k", srv["id"]) if srv else ""
        time.sleep(3)
    if "listening on 8080" not in out:
        state = osctl(node, "read", "/var/lib/kubelet/standin-pods.json").stdout
        logs = osctl(node, "logs", "kubelet", "--tail", "30").stdout
        raise AssertionError(f"the pod never served: {out!r}\nstand-in state: {state}\n"
                             f"kubelet: {logs}\ncontainerd: {osctl(node, 'logs', 'containerd', '--tail', '30').stdout}")
    lines = out.splitlines()
    assert "emptyDir: kept in memory (tmpfs)" in lines, out
    assert "projected token: eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0 (tmpfs)" in lines, out

    reply, deadline = "", time.monotonic() + 60
    while reply != "hello from the pod network\n" and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", node["host_port"]), timeout=10) as c:
                reply = c.makefile().readline()
        except OSError as exc:
            reply = str(exc)
        if reply != "hello from the pod network\n":
            time.sleep(2)
    assert reply == "hello from the pod network\n", reply
    modules = {line.split()[0] for line in ok(node, "read", "/proc/modules").splitlines()}
    print("netfilter modules loaded:", sorted(m for m in modules if m.startswith(
        ("nf_", "nft_", "xt_", "ip_", "ip6_", "iptable", "ip6table", "ipt_", "x_tables"))))
    assert {"nf_tables", "nf_nat", "nf_conntrack"} <= modules, sorted(modules)
    assert modules & {"nft_chain_nat", "iptable_nat"}, sorted(modules)

    mounts = [line.split()[:3] for line in ok(node, "read", "/proc/mounts").splitlines()]
    assert ["overlay", "/opt/cni/bin", "overlay"] in mounts, mounts
    volumes = {m[1].rsplit("/", 1)[1]: m[2] for m in mounts
               if m[1].startswith("/var/lib/kubelet/pods/") and "/volumes/" in m[1]}
    assert volumes == {"cache": "tmpfs", "token": "tmpfs"}, mounts
    delegated = ok(node, "read", "/sys/fs/cgroup/cgroup.subtree_control").split()
    assert {"cpuset", "cpu", "io", "memory", "hugetlb", "pids"} <= set(delegated), delegated
    machine_id = ok(node, "read", "/etc/machine-id").strip()
    assert re.fullmatch(r"[0-9a-f]{32}", machine_id), machine_id


def test_var_survives_a_reboot_on_the_same_disk(node, module_boot, standin_image, server, configs):
    """After `osctl reboot` a boot on the same disk checks and mounts it and finds boot 1's file.

    Boot 2's config (no machine.files, no pods) is staged on boot 1 with apply-config: boot 2
    reads it from the disk's STATE partition, never from the config server, which answers
    503 throughout: on an installed disk /var, containerd and the config need neither the
    server nor the network (var found by label, no request to the server). What it needs of
    boot 1 it reads itself, so it passes alone as after the tests above."""
    assert node["boot"] == 1, "reboots the module's first boot"
    wait_ready(node, "kubelet")  # boot 1 done: machine.files and the pod manifest written
    assert ok(node, "read", MARKER) == configs["marker"]
    assert "talos-e2e-app.yaml" in ok(node, "ls", "/etc/kubernetes/manifests")
    hostname = json.loads(ok(node, "-o", "json", "version"))["hostname"]
    machine_id = ok(node, "read", "/etc/machine-id").strip()
    second = Path(node["disk"]).with_name("second.yaml")
    second.write_bytes(configs["second"])
    assert "staged" in ok(node, "apply-config", "-f", str(second), "--mode", "staged")
    out = ok(node, "reboot")
    assert "rebooting" in out
    node["vm"].wait_exit(BOOT_TIMEOUT)
    assert "reboot: Restarting system" in node["vm"].console  # a reset, not a power-off or crash
    server.status = 503  # would make userdata retry; the stored config means it never asks
    asked = len(server.requests)
    vm = module_boot(standin_image, server=server, api=True, disk=node["disk"])
    node.update(vm=vm, boot=2)
    vm.wait_for(r"service_state service=containerd state=ready", BOOT_TIMEOUT)
    vm.wait_for(r"machine config read from the install disk \(version \d+, staged", BOOT_TIMEOUT)
    wait_api(node)
    wait_ready(node, "containerd")
    report = json.loads(ok(node, "read", "/run/talos/var.json"))
    assert report["action"] == "check" and report["found_by"] == "label", report
    assert report["fsck"] == "clean (superblock)" and "PID 1" in report["notes"][0], report
    assert ok(node, "read", MARKER) == configs["marker"]
    assert "/var" in {m["target"] for m in json.loads(ok(node, "-o", "json", "mounts"))}
    # the same machine gets the same generated name
    assert json.loads(ok(node, "-o", "json", "version"))["hostname"] == hostname
    evs = events(node)

    def first(name: str, state: str, kind: str = "service") -> float:
        ts = [e["t"] for e in evs if e["kind"] == kind and e["name"] == name and e["state"] == state]
        assert ts, f"no {name} {state} event: {[e for e in evs if e['name'] == name]}"
        return min(ts)

    # PID 1 mounted /var (boot phase "var") before the graph started containerd; the var
    # service had nothing left to do and ran no process (done_if: var.json).
    assert first("var", "done", "phase") < first("containerd", "starting")
    var_service = [e for e in evs if e["kind"] == "service" and e["name"] == "var"]
    assert [e["state"] for e in var_service][-1] == "finished", var_service
    assert var_service[-1]["reason"].startswith("done_if holds"), var_service
    assert "starting" not in {e["state"] for e in var_service}, var_service
    assert len(server.requests) == asked  # the config came from the disk
    server.status = 200

    # Boot 2's config has no machine.pods: the kubelet prep removed boot 1's manifest.
    wait_ready(node, "kubelet")
    assert "talos-e2e-app.yaml" not in ok(node, "ls", "/etc/kubernetes/manifests")
    # QEMU gives no SMBIOS UUID: boot 1 generated the machine-id and kept it on /var.
    assert ok(node, "read", "/etc/machine-id").strip() == machine_id
    assert "/opt/cni/bin" in {m["target"] for m in json.loads(ok(node, "-o", "json", "mounts"))}


def test_power_off_leaves_a_clean_filesystem(node):
    """After `osctl shutdown` /var was unmounted; e2fsck -fn and the superblock find it clean."""
    assert node["boot"] == 2, "needs the reboot test's second boot"
    out = ok(node, "shutdown")
    assert "shutting down" in out
    since = len(node["vm"].console)
    assert node["vm"].wait_exit(BOOT_TIMEOUT) == 0
    unmount = re.search(r"unmount target=/var status=(\S+)(.*)", node["vm"].console[since:])
    assert unmount and unmount.group(1) == "unmounted", unmount and unmount.group(0)
    # The payload squashfs goes too, after /var (newer) and before /dev, which holds its loop device.
    order = re.findall(r"unmount target=(\S+) status=(\S+)", node["vm"].console[since:])
    targets = [t for t, _ in order]
    assert ("/usr/lib/talos/payload", "unmounted") in order, order
    assert targets.index("/var") < targets.index("/usr/lib/talos/payload") < targets.index("/dev"), targets
    # The partition's extent from its GPT (loop partition nodes need udev or partscan on the host).
    table = subprocess.run(["partx", "-g", "-b", "-o", "NAME,START,SECTORS", str(node["disk"])],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [r.split() for r in table]
    assert [r[0] for r in rows] == ["EFI", "STATE", "EPHEMERAL"], table
    start, sectors = int(rows[2][1]) * 512, int(rows[2][2]) * 512
    loop = subprocess.run(["losetup", "-r", "--offset", str(start), "--sizelimit", str(sectors),
                           "--show", "-f", str(node["disk"])],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        fsck = subprocess.run(["e2fsck", "-fn", loop], capture_output=True, text=True)
        assert fsck.returncode == 0, f"e2fsck {fsck.returncode}: {fsck.stdout}{fsck.stderr}"
        # e2fsck -n passes a synced but still-mounted ext4 too: the superblock tells.
        sb = subprocess.run(["dumpe2fs", "-h", loop], capture_output=True, text=True,
                            check=True).stdout
        assert re.search(r"^Filesystem state:\s+clean$", sb, re.MULTILINE), sb
        assert "needs_recovery" not in sb, sb
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
