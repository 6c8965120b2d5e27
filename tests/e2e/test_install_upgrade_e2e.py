"""Install from the ISO, boot from the disk by the firmware, upgrade, and roll back by itself.

One node for the module (OVMF under TCG boots cost 20-40 s each), tests in file order:

1. the hybrid ISO (written to a stick: a read-only virtio disk) boots under OVMF with the
   config URL in its UKI; the var service lays out the blank disk and fills the ESP; an
   image is imported into /var; `osctl reboot` ends that QEMU;
2. a new QEMU with the disk only (no -kernel, no ISO) boots it through OVMF and systemd-boot:
   slot A, marked good, the imported image still there;
3. `osctl upgrade --image` with another version string: the node reboots in place, comes
   back on slot B, marked good by the boot-assess service;
4. an upgrade whose kernel cannot find its init (rdinit=/nonexistent: panic, panic=1
   reboots): systemd-boot tries it twice, then boots B again by itself; `osctl version`
   says the upgrade was rolled back;
5. `osctl reset --wipe-mode system-disk --reboot`: /var and STATE wiped, the config fetched
   from the cmdline URL again, the boot slots kept.

Install, upgrade and reset times (command to node ready again) are printed, not asserted.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from initramfs import bootimg
from tests.e2e.conftest import UserdataServer, _serve
from tests.e2e.nodeapi import BOOT_TIMEOUT, gen_cluster, ok, osctl, wait_api, wait_state
from tests.e2e.qemu import VM, VMSpec, free_port

pytestmark = pytest.mark.e2e

CONFIG_URL = "http://10.0.2.100/config.yaml"
V2 = "0.1.0+e2e.2"
BROKEN = "0.1.0+broken"
DISK_MIB = 1024


@pytest.fixture(scope="module")
def artifacts(image, tmp_path_factory) -> dict[str, Path]:
    """The ISO and two upgrade UKIs, all with the config URL on their command line."""
    d = tmp_path_factory.mktemp("boot")
    for name, src in (("vmlinuz", image.kernel), ("initramfs.img", image.initrd)):
        (d / name).symlink_to(src)
    cmdline = f"{bootimg.CMDLINE} talos.config={CONFIG_URL}"
    made = bootimg.build_all(d, cmdline, name="e2e")
    made["v2"] = bootimg.uki(image.kernel, image.initrd, d / "v2.efi", cmdline, version=V2)
    made["broken"] = bootimg.uki(image.kernel, image.initrd, d / "broken.efi",
                                 f"{cmdline} rdinit=/nonexistent panic=1", version=BROKEN)
    return made


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Path:
    out = gen_cluster(tmp_path_factory.mktemp("cluster"), "e2e-install")
    import yaml

    doc = yaml.safe_load((out / "worker.yaml").read_text())
    doc["machine"].setdefault("install", {})["disk"] = "/dev/vda"
    (out / "worker.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


@pytest.fixture(scope="module")
def server(cluster):
    state = UserdataServer(body=(cluster / "worker.yaml").read_bytes())
    srv = _serve(state)
    yield state
    srv.shutdown()
    srv.server_close()


class Node:
    """The module's node across its QEMU processes (one per power cycle without a reboot)."""

    def __init__(self, workdir: Path, server: UserdataServer, cluster: Path):
        self.workdir, self.server, self.cfg = workdir, server, cluster / "osctlconfig"
        self.port = free_port()
        self.vm: VM | None = None
        self.disk = workdir / "disk.raw"
        with open(self.disk, "wb") as f:
            f.truncate(DISK_MIB << 20)

    def start(self, boot_image: Path | None, allow_reboot: bool) -> VM:
        from tests.e2e import conftest

        spec = VMSpec(None, None, self.workdir, firmware="ovmf", boot_image=boot_image,
                      disk=self.disk, config_port=self.server.port, api_port=self.port,
                      allow_reboot=allow_reboot, memory_mb=1536)
        n = sum(1 for _ in self.workdir.glob("serial*.log"))
        self.vm = VM(spec)
        self.vm.log_path = self.workdir / f"serial{n}.log"
        conftest._VMS_BY_NODE.setdefault(__name__, []).append(self.vm)
        return self.vm.start()

    def version(self) -> dict:
        return json.loads(ok(self.cfg, self.port, "-o", "json", "version"))

    def wait_good(self, timeout: float = BOOT_TIMEOUT) -> dict:
        """The API answers and boot-assess has run: this boot is marked good."""
        wait_api(self.cfg, self.port, timeout, vm=self.vm)
        wait_state(self.cfg, self.port, "boot-assess", {"finished"}, timeout=300)
        return self.version()


@pytest.fixture(scope="module")
def node(tmp_path_factory, server, cluster):
    n = Node(tmp_path_factory.mktemp("node"), server, cluster)
    yield n
    if n.vm is not None:
        n.vm.close()


def report(what: str, seconds: float) -> None:
    print(f"\nbenchmark: {what}: {seconds:.1f} s (OVMF, TCG)", flush=True)


def test_iso_installs_to_the_blank_disk(node, artifacts, tmp_path_factory):
    """The ISO boots under OVMF, the var service lays out vda and fills its ESP with slot A."""
    from tests.ociimage import HELLO_C, build_image

    started = time.monotonic()
    vm = node.start(artifacts["iso"], allow_reboot=False)
    wait_api(node.cfg, node.port, BOOT_TIMEOUT, vm=vm)
    wait_state(node.cfg, node.port, "containerd", {"ready"})
    var_log = ok(node.cfg, node.port, "logs", "var")
    assert re.search(r"boot_installed esp=/dev/vda1 slot=A", var_log), var_log
    report("ISO boot to installed and ready", time.monotonic() - started)
    archive = build_image(tmp_path_factory.mktemp("img") / "hello.tar",
                          "example.local/kept:1", source_c=HELLO_C)
    r = osctl(node.cfg, node.port, "image", "import", str(archive), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "example.local/kept:1" in ok(node.cfg, node.port, "image", "list")
    boot = node.version()["boot"]
    assert boot["running"] is None  # booted from the stick, not from an installed slot
    assert boot["slots"]["A"]["state"] == "good"
    ok(node.cfg, node.port, "reboot")
    vm.wait_exit(120)


def test_the_firmware_boots_the_installed_disk(node):
    """No -kernel, no ISO: OVMF finds systemd-boot on vda, slot A boots, /var kept its data."""
    started = time.monotonic()
    vm = node.start(None, allow_reboot=True)
    argv = " ".join(vm.argv())
    assert "-kernel" not in argv and ".iso" not in argv, argv
    version = node.wait_good()
    report("disk boot to marked good", time.monotonic() - started)
    boot = version["boot"]
    assert boot["running"] == "A" and boot["selected"].startswith("talos-1-a")
    assert boot["slots"]["A"] == {**boot["slots"]["A"], "state": "good", "entry": "talos-1-a.efi"}
    assert "example.local/kept:1" in ok(node.cfg, node.port, "image", "list")


def test_upgrade_boots_slot_b_and_marks_it_good(node, artifacts):
    """The new version goes to B with 2 tries; after the in-place reboot B runs, marked good."""
    vm = node.vm
    since = len(vm.console)
    started = time.monotonic()
    out = ok(node.cfg, node.port, "upgrade", "--image", str(artifacts["v2"]), "--tries", "2",
             timeout=600)
    assert "slot B <- talos-2-b+2.efi" in out, out
    vm.wait_for(r"Linux version", BOOT_TIMEOUT, since=since)
    version = node.wait_good()
    report("upgrade command to marked good", time.monotonic() - started)
    boot = version["boot"]
    assert boot["running"] == "B", boot
    assert boot["slots"]["B"]["version"] == V2 and boot["slots"]["B"]["state"] == "good"
    assert boot["slots"]["B"]["entry"] == "talos-2-b.efi"
    assert boot["rolled_back"] is None
    table = ok(node.cfg, node.port, "version")
    assert re.search(rf"slot B\s+{re.escape(V2)} \(good, talos-2-b.efi\)", table), table


def test_a_broken_upgrade_comes_back_on_the_previous_slot_by_itself(node, artifacts):
    """A kernel that cannot find its init panics and reboots; after 2 tries B boots again."""
    vm = node.vm
    since = len(vm.console)
    started = time.monotonic()
    out = ok(node.cfg, node.port, "upgrade", "--image", str(artifacts["broken"]), "--tries", "2",
             timeout=600)
    assert "slot A <- talos-3-a+2.efi" in out, out
    # Two tries, each a panic (no init) that reboots through the firmware.
    first = vm.wait_for(r"Kernel panic - not syncing", BOOT_TIMEOUT, since=since, fatal=())
    vm.wait_for(r"Kernel panic - not syncing", BOOT_TIMEOUT, since=first.end(), fatal=())
    version = node.wait_good()
    report("broken upgrade to rolled back and ready", time.monotonic() - started)
    boot = version["boot"]
    assert boot["running"] == "B", boot
    assert boot["slots"]["A"]["state"] == "bad" and boot["slots"]["A"]["version"] == BROKEN
    assert boot["slots"]["A"]["entry"] == "talos-3-a+0-2.efi"
    assert "ran out of boot tries" in boot["rolled_back"]
    assert "rolled back" in ok(node.cfg, node.port, "version")


def test_reset_wipes_state_and_var_and_the_node_comes_back_unconfigured(node):
    """`osctl reset --wipe-mode system-disk --reboot`: STATE and EPHEMERAL erased after the
    unmount; the node boots its slot again, refetches the config from the cmdline URL and
    formats a fresh /var: the imported image is gone, the boot slots are not."""
    vm = node.vm
    since = len(vm.console)
    fetched = len(node.server.requests)
    started = time.monotonic()
    out = ok(node.cfg, node.port, "reset", "--wipe-mode", "system-disk", "--reboot")
    assert "/dev/vda2, /dev/vda3 wiped" in out, out
    vm.wait_for(r"reset_wiped device=/dev/vda3", 300, since=since)
    vm.wait_for(r"Linux version", BOOT_TIMEOUT, since=since)
    version = node.wait_good()
    var_log = ok(node.cfg, node.port, "logs", "var")
    assert re.search(r"var_plan disk=/dev/vda action=format", var_log), var_log
    assert re.search(r"esp_kept device=/dev/vda1", var_log), var_log
    report("reset to unconfigured and ready again", time.monotonic() - started)
    assert len(node.server.requests) > fetched  # the config came from the URL again
    assert "example.local/kept" not in ok(node.cfg, node.port, "image", "list")
    assert version["boot"]["running"] == "B"
