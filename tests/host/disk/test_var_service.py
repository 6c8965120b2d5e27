"""The var service's process contract: exit 0 with /var mounted, exit 1 naming the refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from talos_init import mounts, syscalls

REPO = Path(__file__).resolve().parents[3]


def _run(tmp_path, layout, config: dict) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    return _service(cfg, layout)


def _service(cfg: Path, layout) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-I", "-m", "talos_init.disk", "--machine-config", str(cfg),
            "--var", str(layout.var), "--etc", str(layout.etc), "--report", str(layout.report),
            "--no-drivers", "--disks"]  # the host's storage is none of this test's business
    # No PATH, as a service may be started: the sbin tools must still be found.
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, env={})


def test_service_mounts_and_leaves_nothing_holding_var(tmp_path, loopdisk, layout):
    """Exit 0, /var mounted, and nothing of ours keeps it busy: a plain umount succeeds."""
    r = _run(tmp_path, layout, {"machine": {"install": {"disk": loopdisk.devnode}}})
    assert r.returncode == 0, r.stdout + r.stderr
    assert mounts.mounted_at(layout.var) == "ext4"
    assert json.loads(layout.report.read_text())["mode"] == "disk"
    syscalls.umount2(layout.var)  # EBUSY here would mean a lingering process or open file
    fsck = subprocess.run(["e2fsck", "-fn", f"{loopdisk.devnode}p3"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout


def test_service_refusal_exits_1_with_the_reason(tmp_path, loopdisk, layout):
    """A foreign disk makes the service exit 1 with a log line naming the disk and wipe: true."""
    subprocess.run(["sgdisk", "--new=1:0:+8M", "--change-name=1:data", loopdisk.devnode],
                   check=True, capture_output=True)
    r = _run(tmp_path, layout, {"machine": {"install": {"disk": loopdisk.devnode}}})
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert "var_failed" in out and loopdisk.devnode in out and "wipe: true" in out
    assert mounts.mounted_at(layout.var) is None


def test_service_with_unreadable_config_exits_1(tmp_path, layout):
    """A config.json that is not JSON is an error naming the file; nothing is mounted."""
    cfg = tmp_path / "config.json"
    cfg.write_text("{not json")
    r = _service(cfg, layout)
    assert r.returncode == 1 and "config_unreadable" in r.stdout + r.stderr
    assert mounts.mounted_at(layout.var) is None
