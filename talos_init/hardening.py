"""Kernel hardening (KSPP, as Talos applies it) and the machine config's sysctls and files.

Two entry points, at two moments of the boot:

- ``apply_kernel_hardening`` runs in PID 1 before any service starts: it only
  writes files under /proc/sys and reads the kernel command line (no child
  process, no heavy import).
- ``apply_machine`` runs in the one-shot service ``machine-setup`` after
  userdata, /var and ``kernel-modules`` (which loads br_netfilter, so the
  bridge sysctls exist): it applies the Kubernetes sysctls, then
  machine.sysctls, then writes machine.files (only under the paths Talos allows).

Every path is a parameter so tests point them into a temp dir.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from talos_init.atomicfile import write_atomic
from talos_init.log import get_logger
from talos_init.record import field, record
from talos_init.userdata.targets import ALLOWED_FILES, ALLOWED_PREFIXES, file_path_problem

log = get_logger("hardening")

# Kernel Self Protection Project recommendations, the set Talos applies at boot
# (pkg/kernel/kspp/kspp.go GetKernelParams).
KSPP_SYSCTLS: dict[str, str] = {
    "kernel.kptr_restrict": "2",
    "kernel.dmesg_restrict": "1",
    "kernel.perf_event_paranoid": "3",
    "kernel.randomize_va_space": "2",
    "kernel.yama.ptrace_scope": "2",  # a minimum: a stricter value already set is kept
    "kernel.unprivileged_bpf_disabled": "1",
    "net.core.bpf_jit_harden": "2",
    "fs.protected_hardlinks": "1",
    "fs.protected_symlinks": "1",
    "fs.protected_fifos": "2",
    "fs.protected_regular": "2",
    "fs.suid_dumpable": "0",
    "dev.tty.ldisc_autoload": "0",
    "dev.tty.legacy_tiocsti": "0",  # kernels 6.2 and later
    "user.max_user_namespaces": "0",
    "vm.unprivileged_userfaultfd": "0",
}
# Values below which we never lower an existing setting (more is stricter).
# (machine.sysctls may still lower them: the operator's word is final.)
AT_LEAST = frozenset({"kernel.yama.ptrace_scope", "kernel.perf_event_paranoid"})

# What Kubernetes networking needs; bridge-nf-* exist only once br_netfilter is loaded.
KUBERNETES_SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv6.conf.default.forwarding": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "vm.overcommit_memory": "1",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "vm.panic_on_oom": "0",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
    # Room for many pods and their watchers, as Talos sets by default.
    "fs.inotify.max_user_instances": "8192",
    "fs.aio-max-nr": "1048576",
    "kernel.pid_max": "262144",
}

# Kernel parameters Talos requires on its command line (KSPP); missing ones are warned about.
REQUIRED_CMDLINE = ("slab_nomerge", "pti=on")



@record
class Report:
    applied: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)  # already stricter than asked
    missing: list[str] = field(default_factory=list)  # the kernel has no such sysctl
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # machine.files path -> what was done

    @property
    def ok(self) -> bool:
        return not self.errors


def sysctl_path(proc_sys: Path, name: str) -> Path:
    """``net.ipv4.ip_forward`` -> proc_sys/net/ipv4/ip_forward; a name with '/' is taken as
    the path itself (interface names such as eth0.100 contain dots)."""
    rel = name if "/" in name else name.replace(".", "/")
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"sysctl {name!r} is not a valid name")
    return proc_sys.joinpath(*parts)


def apply_sysctls(values: Mapping[str, str], proc_sys: Path, report: Report, *,
                  source: str, missing_is_error: bool,
                  at_least: frozenset[str] = frozenset()) -> None:
    """Write each value; for names in ``at_least`` a higher current value is kept."""
    for name, value in values.items():
        try:
            path = sysctl_path(proc_sys, name)
        except ValueError as exc:
            report.errors.append(f"{source}: {exc}")
            continue
        if not path.exists():
            if missing_is_error:
                report.errors.append(
                    f"{source}: sysctl {name} does not exist on this kernel ({path})")
            else:
                report.missing.append(name)
            continue
        want = str(value).strip()
        try:
            if name in at_least:
                current = path.read_text().strip()
                numbers = current.lstrip("-").isdigit() and want.lstrip("-").isdigit()
                if numbers and int(current) >= int(want):
                    report.kept[name] = current
                    continue
            path.write_text(want + "\n")
            report.applied[name] = want
        except OSError as exc:
            report.errors.append(f"{source}: sysctl {name}={want}: {exc.strerror or exc}")


def check_cmdline(cmdline: str) -> list[str]:
    """A warning for each kernel parameter Talos requires that is missing."""
    params = cmdline.split()
    return [f"kernel command line lacks {p} (KSPP; Talos requires it)"
            for p in REQUIRED_CMDLINE if p not in params]


def apply_kernel_hardening(proc_sys: Path = Path("/proc/sys"),
                           cmdline_path: Path = Path("/proc/cmdline")) -> Report:
    """PID 1, before any service: KSPP sysctls and the command-line check. Never raises."""
    report = Report()
    apply_sysctls(KSPP_SYSCTLS, proc_sys, report, source="KSPP", missing_is_error=False,
                  at_least=AT_LEAST)
    try:
        report.warnings += check_cmdline(cmdline_path.read_text())
    except OSError as exc:
        report.warnings.append(f"cannot read {cmdline_path}: {exc}")
    _log(report, "kernel_hardening")
    return report


def check_file_path(path: str) -> str | None:
    """Why ``path`` may not be written by machine.files (the validator's rule), or None."""
    why = file_path_problem(path)
    return None if why is None else f"machine.files path {why}"


def write_file(spec: Mapping[str, Any], root: Path) -> str:
    """Write one machine.files entry under ``root``; returns what was done. Raises ValueError."""
    path = str(spec["path"])
    why = check_file_path(path)
    if why:
        raise ValueError(why)
    target = root / path.lstrip("/")
    content = str(spec.get("content", "")).encode()
    mode = int(spec.get("permissions") or 0o644)
    op = spec.get("op", "create")
    # Resolve before creating anything: a symlink inside /var must not lead the write elsewhere.
    real = os.path.join(os.path.realpath(target.parent), target.name)
    real_root = os.path.realpath(root)
    inside = [os.path.realpath(root / p.lstrip("/")) + "/" for p in ALLOWED_PREFIXES]
    exact = {os.path.join(real_root, f.lstrip("/")) for f in ALLOWED_FILES}
    if not (real in exact or any(real.startswith(p) for p in inside)):
        raise ValueError(f"machine.files path {path!r} resolves to {real}, outside the allowed "
                         "paths (through a symlink)")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if target.is_symlink():
        raise ValueError(f"machine.files path {path!r} is a symlink; refusing to follow it")
    existing = target.read_bytes() if target.exists() else None
    if op == "create":
        if existing is not None:
            if existing == content:
                return "unchanged (create: same content already there)"
            raise ValueError(f"machine.files {path}: op create but the file exists with other "
                             "content (use op: overwrite to replace it)")
        write_atomic(target, content, mode)
        return "created"
    if op == "overwrite":
        write_atomic(target, content, mode)
        return "overwritten"
    if op == "append":
        if existing is not None and existing.endswith(content):
            os.chmod(target, mode)
            return "unchanged (append: content already at the end)"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(target, flags, mode)
        try:
            os.write(fd, content)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        return "appended"
    raise ValueError(f"machine.files {path}: unknown op {op!r} (create, append, overwrite)")


def apply_machine(config: Mapping[str, Any], proc_sys: Path = Path("/proc/sys"),
                  root: Path = Path("/")) -> Report:
    """The one-shot after userdata and /var: Kubernetes sysctls, then the config's."""
    machine = config.get("machine") or {}
    report = Report()
    apply_sysctls(KUBERNETES_SYSCTLS, proc_sys, report, source="kubernetes", missing_is_error=False)
    for name in ("net.bridge.bridge-nf-call-iptables", "net.ipv4.ip_forward"):
        if name in report.missing:
            report.warnings.append(f"{name} is missing: pod traffic across the bridge will not "
                                   "be filtered/forwarded as Kubernetes expects")
    apply_sysctls(machine.get("sysctls") or {}, proc_sys, report, source="machine.sysctls",
                  missing_is_error=True)
    for i, spec in enumerate(machine.get("files") or []):
        try:
            what = write_file(spec, root)
            report.files[str(spec["path"])] = what
            log.info("machine_file", path=spec.get("path"), result=what,
                     permissions=oct(int(spec.get("permissions") or 0o644)))
        except (ValueError, OSError) as exc:
            report.errors.append(f"machine.files[{i}]: {exc}")
    _log(report, "machine_setup")
    return report


def _log(report: Report, event: str) -> None:
    for w in report.warnings:
        log.warning(f"{event}_warning", warning=w)
    for e in report.errors:
        log.error(f"{event}_error", error=e)
    log.info(event, applied=len(report.applied), kept=sorted(report.kept),
             missing=report.missing, errors=len(report.errors))
