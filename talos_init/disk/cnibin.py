"""/opt/cni/bin: where containerd runs CNI plugins from and cluster CNIs install theirs.

flannel, Calico and Cilium copy their plugins into the host's /opt/cni/bin through a
hostPath, so it must be writable; ours (bridge, host-local, loopback, portmap) must be
there from the start. An overlay does both without copying anything at boot: the
image's plugins (read-only, in the payload squashfs) below, /var above, so what a
cluster CNI installs or replaces lives on /var and survives a reboot with it.
Mounted once /var is (talos_init.disk.var.finish), before containerd may start.
"""

from __future__ import annotations

from pathlib import Path

from talos_init import mounts, syscalls
from talos_init.log import get_logger

log = get_logger("disk")

TARGET = Path("/opt/cni/bin")
# recipe.toml: [cni] dest_dir under the [squashfs] mountpoint (a test keeps them equal).
PLUGINS = Path("/usr/lib/talos/payload/usr/lib/cni")
UPPER = "lib/cni/bin"  # under /var: what cluster CNIs install
WORK = "lib/cni/.bin-work"


def mount_cni_bin(var: Path, target: Path = TARGET, plugins: Path = PLUGINS,
                  mountinfo: str = "/proc/self/mountinfo") -> str:
    """Mount the overlay (idempotent); returns what was done. Raises OSError."""
    if mounts.mounted_at(target, mountinfo) == "overlay":
        return "already mounted"
    if not plugins.is_dir():  # an image without the payload (host tests): nothing to show
        return f"skipped: no plugins at {plugins}"
    upper, work = var / UPPER, var / WORK
    for d in (target, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={plugins},upperdir={upper},workdir={work}"
    syscalls.mount("overlay", target, "overlay", syscalls.MS_NODEV | syscalls.MS_NOSUID, options)
    return "mounted"


def setup(var: Path, target: Path = TARGET, plugins: Path = PLUGINS,
          mountinfo: str = "/proc/self/mountinfo") -> None:
    """mount_cni_bin, logged. Error policy: log and go on; /var and containerd still work,
    only pods that need a CNI plugin fail (their sandbox errors name the missing plugin)."""
    try:
        result = mount_cni_bin(var, target, plugins, mountinfo)
    except OSError as exc:
        log.error("cni_bin_failed", path=str(target), error=str(exc))
        return
    log.info("cni_bin", path=str(target), result=result, upper=str(var / UPPER))
