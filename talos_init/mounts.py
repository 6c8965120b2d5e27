"""Boot phase 1: the early mounts, and their reverse at shutdown.

The table is data: order, flags and options in one place, tested as declared.
Every path is relative to ``root`` so tests mount into a temporary directory
inside a private mount namespace.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from talos_init import kmodules, loopdev, syscalls
from talos_init.log import get_logger
from talos_init.preload import PAYLOAD_MODULES
from talos_init.record import record
from talos_init.syscalls import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REMOUNT

log = get_logger("mounts")


@record(frozen=True)
class MountSpec:
    target: str  # absolute path on the node
    fstype: str
    source: str
    flags: int
    data: str = ""
    required: bool = False  # boot cannot go on without it
    why: str = ""  # why a flag that could be set is not
    modules: tuple[str, ...] = ()  # kernel modules loaded first (finit_module, no modprobe)
    image: bool = False  # source is a file under root, mounted through a read-only loop device


SAFE = MS_NOSUID | MS_NODEV | MS_NOEXEC

EARLY_MOUNTS: tuple[MountSpec, ...] = (
    MountSpec("/proc", "proc", "proc", SAFE, required=True),
    MountSpec("/sys", "sysfs", "sysfs", SAFE, required=True),
    MountSpec("/dev", "devtmpfs", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755", required=True,
              why="nodev would make every device node useless"),
    MountSpec("/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
              "gid=5,mode=0620,ptmxmode=0666", why="nodev: the pty nodes are devices"),
    MountSpec("/dev/shm", "tmpfs", "shm", SAFE, "mode=1777"),
    MountSpec("/run", "tmpfs", "run", MS_NOSUID | MS_NODEV, "mode=0755", required=True,
              why="exec: containerd shims and runc keep executable state here"),
    MountSpec("/tmp", "tmpfs", "tmpfs", SAFE, "mode=1777"),
    MountSpec("/sys/fs/cgroup", "cgroup2", "cgroup2", SAFE, "nsdelegate"),
    MountSpec("/sys/kernel/security", "securityfs", "securityfs", SAFE),
    MountSpec("/sys/fs/bpf", "bpf", "bpffs", SAFE, "mode=0700"),
    # Big programs nothing runs before containerd is ready (shim, runc, CNI plugins), read
    # lazily instead of unpacked by the kernel; /usr/sbin/runc etc. are symlinks into it
    # (initramfs/recipe.toml [squashfs]).
    MountSpec("/usr/lib/talos/payload", "squashfs", "/usr/lib/talos/payload.squashfs",
              MS_RDONLY | MS_NOSUID | MS_NODEV, image=True,
              modules=PAYLOAD_MODULES,
              why="exec: the programs in it run from there"),
)


@record(frozen=True)
class MountResult:
    spec: MountSpec
    status: str  # mounted | already | missing (fs not in kernel) | failed
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("mounted", "already")


@record(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo."""

    mount_id: int
    parent_id: int
    target: str
    fstype: str
    source: str
    options: str  # per-mount options (rw, nosuid...)
    super_options: str = ""  # the filesystem's own (errors=continue, mode=755...)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountInfo]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        mounts.append(MountInfo(int(fields[0]), int(fields[1]), _unescape(fields[4]), tail[0],
                                _unescape(tail[1]), fields[5], tail[2] if len(tail) > 2 else ""))
    return mounts


def read_mountinfo(path: Path = Path("/proc/self/mountinfo")) -> list[MountInfo]:
    return parse_mountinfo(path.read_text())


def mounted_at(target: str | os.PathLike[str],
               mountinfo: str | os.PathLike[str] = Path("/proc/self/mountinfo")) -> str | None:
    """The type of the filesystem visible at ``target`` (the newest mount there), or None."""
    want = os.path.realpath(target)
    found = None
    for info in read_mountinfo(Path(mountinfo)):
        if info.target == want:
            found = info.fstype
    return found


def kernel_filesystems(path: Path) -> set[str] | None:
    """The fs types the kernel knows, or None when /proc is not there to ask."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return {line.split()[-1] for line in text.splitlines() if line.strip()}


def mount_all(root: Path = Path("/"), table: tuple[MountSpec, ...] = EARLY_MOUNTS,
              mountinfo: Path | None = None, filesystems: Path | None = None) -> list[MountResult]:
    """Mount the table in order under ``root``; never raises, returns one result per entry.

    Error policy: already mounted / EBUSY is success; a type missing from the
    kernel is a warning; any other error is logged and the next entry is tried
    (the caller decides whether a failed ``required`` mount ends the boot).
    """
    root = Path(root)
    mountinfo = mountinfo or root / "proc/self/mountinfo"
    filesystems = filesystems or root / "proc/filesystems"
    results = []
    for spec in table:
        result = _mount_one(root, spec, mountinfo, filesystems)
        results.append(result)
        level = "info" if result.ok else ("warning" if result.status == "missing" else "error")
        extra = {"error": result.error} if result.error else {}
        getattr(log, level)("mount", target=spec.target, fstype=spec.fstype,
                            status=result.status, **extra)
    return results


def _mount_one(root: Path, spec: MountSpec, mountinfo: Path, filesystems: Path) -> MountResult:
    target = root / spec.target.lstrip("/")
    # Read afresh: /proc/filesystems exists only once /proc (the first entry) is mounted.
    known = kernel_filesystems(filesystems)
    # Modules only when the kernel lacks what the mount needs (built in on some hosts).
    if spec.modules and (known is None or spec.fstype not in known
                         or (spec.image and not (root / "dev/loop-control").exists())):
        try:
            loaded = kmodules.load(spec.modules, root)
        except (OSError, LookupError) as e:
            return MountResult(spec, "failed", f"kernel modules {', '.join(spec.modules)}: {e}")
        log.info("kernel_modules", target=spec.target, **loaded)
        known = kernel_filesystems(filesystems)
    if known is not None and spec.fstype not in known:
        return MountResult(spec, "missing", f"{spec.fstype} is not in {filesystems}")
    try:
        for info in read_mountinfo(mountinfo):
            if info.target == os.fspath(target) and info.fstype == spec.fstype:
                return MountResult(spec, "already")
    except OSError:
        pass  # no /proc yet: try the mount, EBUSY will tell
    try:
        if spec.image:  # attached first: no mount point is made for an image that is not there
            with loopdev.attach(root / spec.source.lstrip("/"), root / "dev") as device:
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                syscalls.mount(str(device), target, spec.fstype, spec.flags, spec.data or None)
        else:
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
            syscalls.mount(spec.source, target, spec.fstype, spec.flags, spec.data or None)
    except OSError as e:
        if e.errno == errno.EBUSY:
            return MountResult(spec, "already")
        return MountResult(spec, "failed", str(e))
    return MountResult(spec, "mounted")


@record(frozen=True)
class UnmountResult:
    target: str
    status: str  # unmounted | read-only (unmount failed, remounted ro) | failed
    error: str = ""


def unmount_all(root: Path = Path("/"), mountinfo: Path | None = None) -> list[UnmountResult]:
    """Unmount everything strictly below ``root``, newest first; never raises.

    Error policy: a busy mount is remounted read-only so its data is safe; if
    that fails too it is logged and the next one is tried. ``root`` itself is
    left alone: an initramfs root cannot be unmounted and has nothing to flush.
    """
    root = Path(root)
    mountinfo = mountinfo or Path("/proc/self/mountinfo")
    try:
        mounts = read_mountinfo(mountinfo)
    except OSError as e:
        log.error("unmount_no_mountinfo", path=str(mountinfo), error=str(e))
        return []
    base = os.fspath(root).rstrip("/")
    below = [m for m in mounts if m.target.startswith(base + "/") and m.target != (base or "/")]
    # mountinfo lists mounts in the order they were made: undo newest first.
    results = []
    for info in reversed(below):
        results.append(_unmount_one(info))
    return results


def _unmount_one(info: MountInfo) -> UnmountResult:
    try:
        syscalls.umount2(info.target)
        log.info("unmount", target=info.target, status="unmounted")
        return UnmountResult(info.target, "unmounted")
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOENT):
            # Already gone with a parent (or shadowed): nothing left to protect.
            return UnmountResult(info.target, "unmounted", str(e))
        first = str(e)
    try:
        # Keep its nosuid/nodev/noexec: a remount without them would clear them.
        keep = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
        flags = sum(f for name, f in keep.items() if name in info.options.split(","))
        syscalls.mount(None, info.target, None, MS_REMOUNT | MS_RDONLY | flags)
        log.warning("unmount", target=info.target, status="read-only", error=first)
        return UnmountResult(info.target, "read-only", first)
    except OSError as e:
        log.error("unmount", target=info.target, status="failed", error=f"{first}; {e}")
        return UnmountResult(info.target, "failed", f"{first}; {e}")
