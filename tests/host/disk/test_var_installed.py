"""An installed /var (partition EPHEMERAL) is mounted at boot without the machine config;
anything else waits for the config, as a first boot does. Real loop disks, real mounts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from talos_init import log, mounts, syscalls
from talos_init.disk import installed
from talos_init.disk.blockdev import DiskError
from talos_init.disk.install import setup
from talos_init.disk.early import EarlyVar
from talos_init.disk.var import setup_at_boot

REPO = Path(__file__).resolve().parents[3]


def _config(disk: str) -> dict:
    return {"version": "v1alpha1", "machine": {"install": {"disk": disk}}}


def _install(loopdisk, layout) -> str:
    """A first boot: partition, format, mount; then 'reboot' (unmount). Returns the partition."""
    result = setup(_config(loopdisk.devnode), layout)
    (layout.var / "log/boot1.txt").write_text("from the first boot\n")
    syscalls.umount2(layout.var)
    layout.report.unlink()  # /run is a fresh tmpfs at every boot
    return result.partition


def _boot_layout(layout, *loops):
    layout.disks = tuple(os.path.basename(lo.devnode) for lo in loops)
    layout.load_drivers = False  # never modprobe on the host
    layout.config_poll = 0.05
    return layout


class Reader:
    """read_config for setup_at_boot: None for the first ``absent`` calls, then ``config``."""

    def __init__(self, config: dict | None, absent: int = 0):
        self.config, self.absent, self.calls = config, absent, 0

    def __call__(self) -> dict | None:
        self.calls += 1
        return None if self.calls <= self.absent else self.config


@pytest.fixture
def second_loop(tmp_path):
    from tests.host.disk.conftest import loop_device

    with loop_device(tmp_path / "disk2.img") as loop:
        yield loop


def test_installed_var_is_found_by_its_name(loopdisk, layout):
    """After a first boot the EPHEMERAL partition is found through sysfs; other disks are not."""
    partition = _install(loopdisk, layout)
    name = os.path.basename(loopdisk.devnode)
    assert installed.find(disks=(name,)) == [installed.Candidate(partition, loopdisk.devnode)]
    assert installed.find(disks=("no-such-disk",)) == []
    assert all(c.disk != loopdisk.devnode for c in installed.find())  # loop: never by default


def test_installed_var_is_mounted_without_reading_the_config(loopdisk, layout):
    """A reboot on an installed disk mounts /var before (and without) the machine config."""
    partition = _install(loopdisk, layout)
    reader = Reader(None, absent=10**9)
    result = setup_at_boot(_boot_layout(layout, loopdisk), reader)
    assert reader.calls == 0
    assert (result.mode, result.action, result.found_by) == ("disk", "check", "label")
    assert result.partition == partition and result.fsck == "clean (superblock)"
    assert mounts.mounted_at(layout.var) == "ext4"
    assert (layout.var / "log/boot1.txt").read_text() == "from the first boot\n"
    with open("/proc/self/mountinfo") as f:
        line = next(li for li in f if li.split()[4] == str(layout.var))
    assert {"nodev", "nosuid", "noatime"} <= set(line.split()[5].split(","))
    assert json.loads(layout.report.read_text())["found_by"] == "label"


def test_blank_disk_waits_for_the_config_then_installs(loopdisk, layout):
    """No EPHEMERAL anywhere: nothing happens until the config exists, then a first boot."""
    reader = Reader(_config(loopdisk.devnode), absent=3)
    result = setup_at_boot(_boot_layout(layout, loopdisk), reader)
    assert reader.calls == 4
    assert (result.action, result.found_by) == ("partition", "config")
    assert mounts.mounted_at(layout.var) == "ext4"


def test_two_installed_disks_wait_for_the_config_to_choose(loopdisk, second_loop, layout):
    """Two EPHEMERAL partitions: no guess; the config's install.disk decides."""
    _install(second_loop, layout)
    _install(loopdisk, layout)
    reader = Reader(_config(second_loop.devnode), absent=2)
    result = setup_at_boot(_boot_layout(layout, loopdisk, second_loop), reader)
    assert reader.calls == 3
    assert result.device == second_loop.devnode and result.found_by == "config"


def test_damaged_installed_var_is_left_to_the_config_and_refused(loopdisk, layout):
    """An EPHEMERAL that fails its check is not mounted early; without wipe it is refused."""
    partition = _install(loopdisk, layout)
    with open(partition, "r+b") as f:
        f.seek(1024 + 0x18)  # s_log_block_size: an impossible block size
        f.write((40).to_bytes(4, "little"))
    reader = Reader(_config(loopdisk.devnode), absent=1)
    with pytest.raises(DiskError, match=r"not mounting /var: .*e2fsck -p status"):
        setup_at_boot(_boot_layout(layout, loopdisk), reader)
    assert reader.calls == 2 and mounts.mounted_at(layout.var) is None


def test_service_mounts_installed_var_with_no_config_file(tmp_path, loopdisk, layout):
    """The var service process exits 0 with /var mounted although config.json never appears."""
    _install(loopdisk, layout)
    argv = [sys.executable, "-I", "-m", "talos_init.disk", "--machine-config",
            str(tmp_path / "never.json"), "--var", str(layout.var), "--etc", str(layout.etc),
            "--report", str(layout.report), "--no-drivers",
            "--disks", os.path.basename(loopdisk.devnode)]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, env={})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "var_installed" in r.stdout + r.stderr
    assert mounts.mounted_at(layout.var) == "ext4"
    assert json.loads(layout.report.read_text())["found_by"] == "label"


@pytest.mark.parametrize("debugfs, why", [
    ("ssv state 3", "errors are recorded in the superblock"),  # valid | error
    ("feature needs_recovery", "the journal needs replaying"),  # as after a crash
], ids=["errors-recorded", "needs-recovery"])
def test_installed_var_is_checked_when_its_superblock_asks(loopdisk, layout, debugfs, why):
    """A superblock that records errors or an unreplayed journal sends the installed /var
    through e2fsck -p before it is mounted; a clean one is mounted without it (above)."""
    partition = _install(loopdisk, layout)
    # debugfs rewrites the superblock with a valid checksum (metadata_csum): as the kernel would.
    subprocess.run(["debugfs", "-w", "-R", debugfs, partition], check=True, capture_output=True)
    with log.capture() as events:
        result = setup_at_boot(_boot_layout(layout, loopdisk), Reader(None, absent=5))
    assert result.found_by == "label" and result.fsck != "clean (superblock)"
    assert mounts.mounted_at(layout.var) == "ext4"
    assert [e["reason"] for e in events if e["event"] == "var_check_needed"] == [why]


def _early(layout) -> EarlyVar:
    """PID 1's early /var, without drivers to load (this host's kernel is not the image's)."""
    early = EarlyVar(layout, layout.report.parent / "var.early")
    early.start()
    return early


def test_pid1_mounts_a_clean_installed_var_and_the_service_keeps_its_report(loopdisk, layout):
    """PID 1's early mount: one clean EPHEMERAL is mounted and reported, the decision marker
    written; the var service then finds it mounted, makes its directories, keeps the report."""
    partition = _install(loopdisk, layout)
    early = _early(_boot_layout(layout, loopdisk))
    assert early.outcome == "mounted"
    assert (layout.report.parent / "var.early").read_text() == "mounted\n"
    assert mounts.mounted_at(layout.var) == "ext4"
    report = json.loads(layout.report.read_text())
    assert report["partition"] == partition and report["found_by"] == "label"
    assert "PID 1" in report["notes"][0]
    service = setup_at_boot(layout, Reader(None, absent=10**9))
    assert service.mode == "already-mounted"
    assert json.loads(layout.report.read_text()) == report
    assert (layout.var / "lib/containerd").is_dir() and (layout.var / "log/boot1.txt").exists()


def test_pid1_leaves_anything_not_plain_to_the_service(loopdisk, second_loop, layout):
    """A check due, or two candidates: PID 1 mounts nothing and writes no report (containerd
    waits for the var service's), only its decision; the service then does the check."""
    partition = _install(loopdisk, layout)
    subprocess.run(["debugfs", "-w", "-R", "ssv state 3", partition], check=True,
                   capture_output=True)
    early = _early(_boot_layout(layout, loopdisk))
    assert early.outcome == f"left: {partition}: errors are recorded in the superblock"
    assert (layout.report.parent / "var.early").read_text().startswith("left: ")
    assert mounts.mounted_at(layout.var) is None and not layout.report.exists()
    result = setup_at_boot(_boot_layout(layout, loopdisk), Reader(None, absent=5))
    assert result.fsck != "clean (superblock)" and json.loads(layout.report.read_text())["mode"] == "disk"
    syscalls.umount2(layout.var)
    layout.report.unlink()
    _install(second_loop, layout)
    early = _early(_boot_layout(layout, loopdisk, second_loop))
    assert early.outcome == "left: 2 installed EPHEMERAL partitions"
    assert mounts.mounted_at(layout.var) is None and not layout.report.exists()
