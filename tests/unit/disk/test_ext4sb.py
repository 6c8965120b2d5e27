"""The superblock test that lets an installed /var skip e2fsck: each reason e2fsck -p would
check for, on a real filesystem made by mkfs.ext4 and changed with debugfs (which keeps the
superblock checksum right)."""

from __future__ import annotations

import subprocess
import time

import pytest

from talos_init.disk import ext4sb


@pytest.fixture
def fs(tmp_path):
    image = tmp_path / "fs.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "EPHEMERAL", str(image)], check=True)
    return str(image)


def debugfs(image: str, *requests: str) -> None:
    for request in requests:
        subprocess.run(["debugfs", "-w", "-R", request, image], check=True, capture_output=True)


def test_a_fresh_filesystem_is_clean_and_labelled(fs):
    sb = ext4sb.read(fs)
    assert sb is not None and sb.label == "EPHEMERAL"
    assert ext4sb.fsck_reason(sb, time.time()) is None
    # e2fsck -p agrees: status 0, "clean"
    r = subprocess.run(["e2fsck", "-p", fs], capture_output=True, text=True)
    assert r.returncode == 0 and "clean" in r.stdout


@pytest.mark.parametrize("requests, reason", [
    (["ssv state 3"], "errors are recorded in the superblock"),
    (["ssv error_count 2"], "errors are recorded in the superblock"),
    (["ssv state 0"], "not cleanly unmounted"),
    (["feature needs_recovery"], "the journal needs replaying"),
    (["ssv last_orphan 12"], "orphan inodes are left to clean up"),
    (["ssv max_mnt_count 20", "ssv mnt_count 20"], "mounted 20 times without a check"),
    (["ssv checkinterval 3600", "ssv lastcheck 20000101"], "the check interval has passed"),
    (["ssv checkinterval 3600", "ssv lastcheck 30000101"], "last checked in the future"),
])
def test_what_makes_e2fsck_check(fs, requests, reason):
    debugfs(fs, *requests)
    sb = ext4sb.read(fs)
    assert ext4sb.fsck_reason(sb, time.time()) == reason


def test_limits_that_are_not_reached_do_not_count(fs):
    debugfs(fs, "ssv max_mnt_count 20", "ssv mnt_count 19", "ssv checkinterval 3600",
            f"ssv lastcheck @{int(time.time()) - 60}")
    assert ext4sb.fsck_reason(ext4sb.read(fs), time.time()) is None


def test_no_superblock_is_none(tmp_path):
    blank = tmp_path / "blank"
    blank.write_bytes(bytes(4096))
    assert ext4sb.read(str(blank)) is None
    assert ext4sb.read(str(tmp_path / "missing")) is None
