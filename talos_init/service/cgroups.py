"""One cgroup v2 directory per service: create, limit, signal everything in it, remove.

The root (``/sys/fs/cgroup`` on the node) is a parameter so host tests can
mount their own cgroup2 hierarchy. A missing controller (no memory
controller on the test host's cgroup2) is a logged warning, not an error.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

from talos_init.log import get_logger

log = get_logger("service")

# What a service group needs for its limits. At the root every controller the kernel offers is
# enabled: the kubelet's pods live there (cgroupRoot "/") and it expects cpuset and hugetlb too
# (kubelet cm getSupportedUnifiedControllers).
CONTROLLERS = ("cpu", "memory", "pids", "io")

# The CPU weight of a top-level group, where it competes with the other groups and with PID 1
# itself (in the root cgroup, weighing as a cpu.weight of 100). A service's own cpu_weight only
# counts among the services of its group. As Talos reserves CPU for its pod runtime, containerd
# gets it ahead of the system services starting beside it at boot (run 13, performance.md).
GROUP_CPU_WEIGHTS = {"podruntime": 400}


class Cgroups:
    def __init__(self, root: Path):
        self.root = root
        self._prepared: set[str] = set()
        self._warned: set[str] = set()

    def path(self, group: str, sid: str) -> Path:
        return self.root / group / sid

    def available(self) -> bool:
        return (self.root / "cgroup.controllers").exists()

    def _enable_controllers(self, directory: Path, every: bool = False) -> set[str]:
        try:
            have = (directory / "cgroup.controllers").read_text().split()
        except OSError:
            return set()
        enabled = set()
        for name in (have if every else CONTROLLERS):
            if name not in have:
                continue
            try:
                (directory / "cgroup.subtree_control").write_text(f"+{name}")
                enabled.add(name)
            except OSError as exc:  # warn once: limits of that kind will not apply
                self._warn(f"enable:{directory}:{name}", "cgroup_controller_unavailable",
                           directory=str(directory), controller=name, error=str(exc))
        return enabled

    def _warn(self, key: str, event: str, **kw: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(event, **kw)

    def prepare(self, group: str, sid: str, memory_max: int | None, nice: int | None = None,
                kill_leftovers: bool = True, cpu_weight: int | None = None) -> Path | None:
        """Create the service's cgroup (reused if left over) and set its limits.

        Returns None when cgroups are unusable here (policy: warn, run unconfined).
        """
        if not self.available():
            self._warn("root", "cgroups_unavailable", root=str(self.root))
            return None
        try:
            if group not in self._prepared:
                self._enable_controllers(self.root, every=True)
                (self.root / group).mkdir(exist_ok=True)
                self._enable_controllers(self.root / group)
                self._prepared.add(group)
                if group in GROUP_CPU_WEIGHTS:
                    self._group_weight(group, GROUP_CPU_WEIGHTS[group])
            path = self.path(group, sid)
            path.mkdir(exist_ok=True)
        except OSError as exc:
            self._warn(f"mkdir:{group}/{sid}", "cgroup_create_failed", group=group, service=sid,
                       error=str(exc))
            return None
        if kill_leftovers:  # leftovers from an earlier run must not share the new one
            self.kill(path)
        if memory_max is not None:
            try:
                (path / "memory.max").write_text(str(memory_max))
            except OSError as exc:
                self._warn(f"memory:{path}", "cgroup_memory_max_unavailable", service=sid,
                           error=str(exc), hint="no memory controller: limit not applied")
        # Between services, the cpu controller's weights decide, not the processes' nice.
        weight = (("cpu.weight.nice", nice) if nice is not None
                  else ("cpu.weight", cpu_weight) if cpu_weight is not None else None)
        if weight is not None:
            try:
                (path / weight[0]).write_text(str(weight[1]))
            except OSError as exc:
                self._warn(f"cpu:{path}", "cgroup_cpu_weight_unavailable", service=sid,
                           error=str(exc), hint="no cpu controller: only the process nice applies")
        return path

    def _group_weight(self, group: str, weight: int) -> None:
        try:
            (self.root / group / "cpu.weight").write_text(str(weight))
        except OSError as exc:
            self._warn(f"cpu:{group}", "cgroup_cpu_weight_unavailable", group=group, error=str(exc),
                       hint="no cpu controller: the group competes at the default weight")

    @staticmethod
    def pids(path: Path) -> list[int]:
        try:
            return [int(x) for x in (path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def signal(self, path: Path, signum: int) -> None:
        """Send ``signum`` to every process in the cgroup (grandchildren in new sessions too)."""
        if signum == signal.SIGKILL:
            self.kill(path)
            return
        for pid in self.pids(path):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def kill(self, path: Path) -> None:
        """SIGKILL everything in the cgroup at once (cgroup.kill, else one by one)."""
        try:
            (path / "cgroup.kill").write_text("1")
            return
        except FileNotFoundError:
            if not path.exists():
                return
        except OSError:
            pass
        for pid in self.pids(path):  # kernels before 5.14
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, path: Path) -> bool:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                log.warning("cgroup_remove_failed", path=str(path), error=str(exc))
            return False  # still populated: removed at the next start or stop

    def contains(self, path: Path, pid: int, proc: Path = Path("/proc")) -> bool:
        """Whether ``pid`` lives in ``path`` (or below it)."""
        try:
            text = (proc / str(pid) / "cgroup").read_text()
        except OSError:
            return False
        rel = "/" + str(path.relative_to(self.root))
        for line in text.splitlines():
            if line.startswith("0::"):
                member = line[3:]
                return member == rel or member.startswith(rel + "/")
        return False
