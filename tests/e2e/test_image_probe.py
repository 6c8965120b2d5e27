"""The image on its own: booted with the probe as PID 1 (tests/e2e/probe/init).

One VM for the module: it imports everything, coldplugs udev, starts
containerd, then powers off. These pass without talos_init's PID 1.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.qemu import VM

BOOT_TIMEOUT = 600


@pytest.fixture(scope="module")
def probe_vm(module_boot, probe_image) -> VM:
    vm = module_boot(probe_image)
    vm.wait_for(r"^PROBE (done|error)", BOOT_TIMEOUT)
    vm.wait_exit(120)
    return vm


def probe_line(vm: VM, what: str) -> str:
    m = re.search(rf"^PROBE {what}\b ?(.*)$", vm.console, re.MULTILINE)
    assert m, f"no 'PROBE {what}' line on the console"
    return m.group(1)


def test_probe_ran_without_error(probe_vm):
    """The probe reached its end with no exception as PID 1."""
    assert "PROBE error" not in probe_vm.console
    assert probe_line(probe_vm, "start").startswith("pid=1")


def test_interpreter_stdlib_and_dependencies_import_as_pid1(probe_vm):
    """python3.11 imports psutil, pyroute2, pyudev and yaml (with libyaml) inside the image."""
    detail = probe_line(probe_vm, "imports")
    assert detail.startswith("ok ") and "libyaml=True" in detail


def test_no_shell_at_the_usual_paths(probe_vm):
    """/bin/sh, bash, busybox and perl do not exist on the booted node."""
    assert probe_line(probe_vm, "forbidden") == "none"


def test_udev_coldplug_loads_virtio_drivers(probe_vm):
    """udevd, triggered for coldplug, loads virtio_pci, virtio_net and virtio_blk from the image's modules."""
    modules = set(probe_line(probe_vm, "modules").split())
    assert {"virtio_pci", "virtio_net", "virtio_blk"} <= modules
    devices = set(probe_line(probe_vm, "devices").split())
    assert {"eth0", "vda"} <= devices
    assert probe_line(probe_vm, "pyudev") == "block=2"  # vda and loop0 (the payload, max_loop=1)


def test_payload_squashfs_is_mounted_by_pid1_code(probe_vm):
    """talos_init.mounts loads loop and squashfs itself and mounts the payload; runc and the shim
    resolve into it and run from there."""
    assert probe_line(probe_vm, "payload").startswith("mounted ")
    assert probe_line(probe_vm, "payload-target") == "/usr/lib/talos/payload/usr/sbin/runc squashfs"
    run = probe_line(probe_vm, "payload-run")
    assert re.fullmatch(r"runc=0:runc version \S+ shim=0:\S*containerd-shim-runc-v2:", run), run
    assert {"loop", "squashfs"} <= set(probe_line(probe_vm, "modules").split())


def test_containerd_sends_ready_over_sd_notify(probe_vm):
    """containerd from the image starts with the shipped static config and sends READY=1."""
    assert probe_line(probe_vm, "containerd").startswith("ready ")
    assert "containerd status=0" in probe_vm.console


def test_power_off_ends_qemu(probe_vm):
    """reboot(RB_POWER_OFF) from PID 1 makes QEMU exit by itself with status 0."""
    assert probe_vm.exited
    assert "reboot: Power down" in probe_vm.console
