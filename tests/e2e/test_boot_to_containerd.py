"""The node boots with talos_init as PID 1, reaches containerd ready, and powers off cleanly.

One VM for the module, with a test-only ``e2e-report`` service added as a
second cpio (tests/e2e/report/) that prints /proc/self/mountinfo and
/proc/modules to the console. The tests run in file order: power-off last.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Image
from tests.e2e.overlay import with_files
from tests.e2e.qemu import VM

REPORT = Path(__file__).with_name("report")
BOOT_TIMEOUT = 600  # for the whole module: a stuck boot costs 10 minutes, not 10 per test


def left(vm: VM) -> float:
    return max(10.0, vm.started_at + BOOT_TIMEOUT - time.monotonic())


def service_line(service: str, state: str) -> str:
    return rf"service_state service={re.escape(service)} state={state}\b"


@pytest.fixture(scope="module")
def node_image(image: Image, tmp_path_factory) -> Image:
    out = tmp_path_factory.mktemp("report") / "initramfs-report.img"
    with_files(image.initrd, out, {
        "/usr/lib/talos/e2e/report.py": ((REPORT / "report.py").read_bytes(), 0o644),
        "/usr/lib/talos/services/e2e-report.yaml": ((REPORT / "e2e-report.yaml").read_bytes(), 0o644),
    })
    return Image(image.kernel, out, image.manifest, image.digest)


@pytest.fixture(scope="module")
def node(module_boot, node_image) -> VM:
    from tests.e2e.conftest import UserdataServer, _serve, default_config

    state = UserdataServer(body=default_config())
    server = _serve(state)
    vm = module_boot(node_image, server=state, api=True)
    yield vm
    server.shutdown()
    server.server_close()


def test_pid1_mounts_the_system_with_safe_flags(node):
    """/proc, /sys, /dev, /run, /tmp, cgroup2 and the payload are mounted, with nosuid/nodev/noexec where they allow."""
    node.wait_for(r"^E2E done", left(node))
    mounts = {m.group(1): (m.group(2), set(m.group(3).split(",")))
              for m in re.finditer(r"^E2E mount (\S+) (\S+) (\S+)$", node.console, re.MULTILINE)}
    expected = {
        "/proc": ("proc", {"nosuid", "nodev", "noexec"}),
        "/sys": ("sysfs", {"nosuid", "nodev", "noexec"}),
        "/dev": ("devtmpfs", {"nosuid"}),
        "/run": ("tmpfs", {"nosuid", "nodev"}),
        "/tmp": ("tmpfs", {"nosuid", "nodev"}),
        "/sys/fs/cgroup": ("cgroup2", {"nosuid", "nodev", "noexec"}),
        # The payload squashfs (shim, runc, CNI plugins): read-only, programs run from it.
        "/usr/lib/talos/payload": ("squashfs", {"ro", "nosuid", "nodev"}),
    }
    for target, (fstype, flags) in expected.items():
        assert target in mounts, f"{target} not mounted"
        assert mounts[target][0] == fstype, f"{target}: {mounts[target][0]} is not {fstype}"
        assert flags <= mounts[target][1], f"{target}: {sorted(mounts[target][1])} lacks {sorted(flags)}"
    assert "noexec" not in mounts["/usr/lib/talos/payload"][1]


def test_udevd_is_ready_and_loads_the_virtio_drivers(node):
    """udevd reports READY=1, coldplug finishes, and the virtio drivers are loaded by it."""
    node.wait_for(service_line("udevd", "ready"), left(node))
    node.wait_for(service_line("udev-trigger", "finished"), left(node))
    m = node.wait_for(r"^E2E modules (.*)$", left(node))
    assert {"virtio_pci", "virtio_net", "virtio_blk"} <= set(m.group(1).split())


def test_devices_service_finds_the_network_interface(node):
    """The devices one-shot finds the network interface through pyudev and finishes (exit 0)."""
    node.wait_for(service_line("devices", "finished"), left(node))


def test_containerd_reaches_ready_through_sd_notify(node):
    """containerd becomes ready from its own READY=1 on the notify socket."""
    node.wait_for(service_line("containerd", "ready"), left(node))


def test_service_priorities_reach_the_process_and_its_cgroup(node):
    """confinement.nice: the report service's cgroup weight and process nice are 10; udevd keeps 0.
    confinement.cpu_weight: containerd's cgroup weighs 400, its processes keep nice 0; its group,
    podruntime, weighs 400 against the system services' group (100) and PID 1."""
    node.wait_for(r"^E2E done", left(node))
    got = {m.group(1): m.group(2).split()
           for m in re.finditer(r"^E2E cpu (\S+) (.*)$", node.console, re.MULTILINE)}
    groups = dict(re.findall(r"^E2E cpugroup (\S+) (.*)$", node.console, re.MULTILINE))
    assert groups == {"system": "100", "podruntime": "400"}, groups
    assert got["e2e-report"][:2] == ["10", "11"] and set(got["e2e-report"][2:]) == {"10"}, got
    assert got["udevd"][:2] == ["0", "100"] and set(got["udevd"][2:]) == {"0"}, got
    assert got["containerd"][1] == "400" and set(got["containerd"][2:]) == {"0"}, got


def test_acpi_power_button_stops_services_in_reverse_order_and_qemu_exits(node):
    """system_powerdown: containerd stops before udevd, PID 1 powers off and QEMU exits by itself."""
    node.wait_for(service_line("containerd", "ready"), left(node))
    # The button is an input device PID 1 opens once udev loaded its driver: a press before
    # that is lost in the kernel, so press only once PID 1 listens. QEMU's pc machine has two
    # KEY_POWER devices and system_powerdown reaches the second (ACPI fixed-feature) one.
    node.wait_for(r"power_button_watched device=\S+(?s:.*)power_button_watched device=", left(node))
    since = len(node.console)
    node.powerdown()
    node.wait_exit(300)
    tail = node.console[since:]
    stopped = [m.group(1) for m in re.finditer(r"service_state service=(\S+) state=(?:finished|failed)",
                                               tail)]
    assert "containerd" in stopped and "udevd" in stopped, tail[-3000:]
    assert stopped.index("containerd") < stopped.index("udevd")
    assert "reboot: Power down" in tail
