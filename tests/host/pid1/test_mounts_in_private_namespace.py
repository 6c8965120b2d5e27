"""The early mounts, made for real into a temp root inside a private mount namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from initramfs import squashfs
from talos_init import loopdev, mounts, syscalls

from .conftest import in_private_namespace


PAYLOAD = next(s for s in mounts.EARLY_MOUNTS if s.image)


def _payload_image(root: Path, src: Path) -> None:
    """A real squashfs at the payload's path in ``root``, holding a program (a copy of true)."""
    (src / "usr/bin").mkdir(parents=True)
    shutil.copy2("/usr/bin/true", src / "usr/bin/true")
    image = root / PAYLOAD.source.lstrip("/")
    image.parent.mkdir(parents=True)
    squashfs.build(src, image, ["-comp", "zstd"])


def _loops_on(image: str, timeout: float = 5.0) -> list[str]:
    """Loop devices still backed by ``image``, after waiting for the kernel's (deferred) autoclear."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for f in Path("/sys/block").glob("loop*/loop/backing_file"):
            try:
                if f.read_text().strip() == image:
                    found.append(f.parent.parent.name)
            except OSError:
                pass  # detached while we looked
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _mount_table_into(root: str) -> dict:
    results = mounts.mount_all(Path(root), mountinfo=Path("/proc/self/mountinfo"))
    table = {m.target: {"fstype": m.fstype, "options": m.options.split(","), "source": m.source}
             for m in mounts.read_mountinfo() if m.target.startswith(root + "/")}
    device = Path(table[root + PAYLOAD.target]["source"])
    backing = loopdev.backing_file(device)
    ran = subprocess.run([root + PAYLOAD.target + "/usr/bin/true"]).returncode  # exec allowed
    again = mounts.mount_all(Path(root), mountinfo=Path("/proc/self/mountinfo"))
    unmounted = mounts.unmount_all(Path(root))
    left = [m.target for m in mounts.read_mountinfo() if m.target.startswith(root + "/")]
    return {"results": {r.spec.target: [r.status, r.error] for r in results},
            "again": {r.spec.target: r.status for r in again},
            "table": table, "unmounted": [[u.target, u.status] for u in unmounted], "left": left,
            "backing": backing, "ran": ran, "after": _loops_on(root + PAYLOAD.source)}


def test_mount_all_mounts_every_entry_with_its_flags(tmp_path):
    """Every entry is mounted with nosuid/nodev/noexec as declared, then all are unmounted;
    the payload squashfs through a read-only loop device that unmounting frees (autoclear)."""
    root = str(tmp_path / "root")
    _payload_image(Path(root), tmp_path / "src")
    out = in_private_namespace(_mount_table_into, root)
    assert out["results"] == {s.target: ["mounted", ""] for s in mounts.EARLY_MOUNTS}
    for spec in mounts.EARLY_MOUNTS:
        seen = out["table"][root + spec.target]
        assert seen["fstype"] == spec.fstype
        for flag, name in ((syscalls.MS_NOSUID, "nosuid"), (syscalls.MS_NODEV, "nodev"),
                           (syscalls.MS_NOEXEC, "noexec")):
            assert (name in seen["options"]) == bool(spec.flags & flag), (spec.target, name)
    payload = out["table"][root + PAYLOAD.target]
    assert payload["options"][0] == "ro" and payload["source"].startswith(root + "/dev/loop")
    assert out["backing"] == root + PAYLOAD.source and out["ran"] == 0
    # A second run finds everything in place: "already", not an error.
    assert set(out["again"].values()) == {"already"}
    # Undone newest first (the payload before the mounts it needs), nothing left behind.
    targets = [t for t, _ in out["unmounted"]]
    assert targets[:2] == [root + PAYLOAD.target, root + "/sys/fs/bpf"] and targets[-1] == root + "/proc"
    assert {s for _, s in out["unmounted"]} == {"unmounted"}
    assert out["left"] == []
    assert out["after"] == []  # the loop device let go of the image with the unmount


def _payload_failures(root: str, bad: str) -> dict:
    dev = next(s for s in mounts.EARLY_MOUNTS if s.target == "/dev")
    proc = mounts.MountSpec("/proc", "proc", "proc", mounts.SAFE)
    missing = mounts.mount_all(Path(root), (proc, dev, PAYLOAD))
    made = Path(root, PAYLOAD.target.lstrip("/")).exists()
    Path(root, PAYLOAD.source.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    Path(root, PAYLOAD.source.lstrip("/")).write_bytes(bad.encode() * 4096)
    garbage = mounts.mount_all(Path(root), (PAYLOAD,))
    left = _loops_on(root + PAYLOAD.source)
    mounts.unmount_all(Path(root))
    return {"missing": [missing[2].status, missing[2].error], "garbage": [garbage[0].status, garbage[0].error],
            "loops_left": left, "mount_point_made": made}


def test_payload_that_cannot_mount_is_reported_and_frees_its_loop_device(tmp_path):
    """A missing image names the file; an image that is no squashfs names the mount; neither raises,
    and the loop device attached for the failed mount is freed."""
    root = str(tmp_path / "root")
    out = in_private_namespace(_payload_failures, root, "not a squashfs")
    status, error = out["missing"]
    assert status == "failed" and "No such file" in error and root + PAYLOAD.source in error
    assert out["mount_point_made"] is False  # no mount point made for an image that is not there
    status, error = out["garbage"]
    assert status == "failed" and "mount squashfs" in error and root + PAYLOAD.target in error
    assert out["loops_left"] == []


def _busy_unmount(root: str) -> dict:
    spec = mounts.MountSpec("/data", "tmpfs", "tmpfs", mounts.SAFE, "mode=0755")
    mounts.mount_all(Path(root), (spec,), mountinfo=Path("/proc/self/mountinfo"))
    Path(root, "data", "file").write_text("kept")
    fd = os.open(root + "/data/file", os.O_RDONLY)  # keeps the mount busy
    result = mounts.unmount_all(Path(root))
    os.close(fd)
    try:
        Path(root, "data", "new").write_text("x")
        new_file = True
    except OSError as e:
        new_file = e.strerror
    opts = [m.options for m in mounts.read_mountinfo() if m.target == root + "/data"]
    return {"result": [[r.target, r.status] for r in result], "opts": opts,
            "new_file": new_file}


def test_busy_mount_is_remounted_read_only(tmp_path):
    """A mount that cannot be unmounted (an open file) is remounted read-only instead."""
    root = str(tmp_path / "root")
    out = in_private_namespace(_busy_unmount, root)
    assert out["result"] == [[root + "/data", "read-only"]]
    opts = out["opts"][0].split(",")
    assert opts[0] == "ro" and {"nosuid", "nodev", "noexec"} <= set(opts)
    assert out["new_file"] == "Read-only file system"


def _missing_type(root: str) -> dict:
    spec = mounts.MountSpec("/nope", "notafs", "none", mounts.SAFE)
    proc = mounts.MountSpec("/proc", "proc", "proc", mounts.SAFE)
    results = mounts.mount_all(Path(root), (proc, spec))
    mounts.unmount_all(Path(root))
    return [[r.status, r.error] for r in results]


def test_fs_type_missing_from_kernel_is_a_warning_not_an_attempt(tmp_path):
    """A type absent from /proc/filesystems is reported as missing and not mounted."""
    root = str(tmp_path / "root")
    out = in_private_namespace(_missing_type, root)
    assert out[0] == ["mounted", ""]
    assert out[1][0] == "missing" and "notafs" in out[1][1]
    assert not (tmp_path / "root" / "nope").exists()


def _mount_error(root: str) -> dict:
    Path(root).mkdir(parents=True, exist_ok=True)
    Path(root, "file").write_text("not a directory")
    spec = mounts.MountSpec("/file/sub", "tmpfs", "tmpfs", mounts.SAFE)
    results = mounts.mount_all(Path(root), (spec,), mountinfo=Path("/proc/self/mountinfo"))
    return [[r.status, r.error] for r in results]


def test_mount_failure_is_reported_with_its_path(tmp_path):
    """A mount that fails is reported as failed with the error and the path, not raised."""
    root = str(tmp_path / "root")
    status, error = in_private_namespace(_mount_error, root)[0]
    assert status == "failed"
    assert "Not a directory" in error and "file" in error
