"""Hardening and machine.sysctls/files against a temp /proc/sys tree and root."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from talos_init.hardening import (
    KSPP_SYSCTLS,
    apply_kernel_hardening,
    apply_machine,
    check_cmdline,
    check_file_path,
    sysctl_path,
    write_file,
)


def _tree(root: Path, names: dict[str, str]) -> Path:
    proc_sys = root / "proc/sys"
    for name, value in names.items():
        p = sysctl_path(proc_sys, name)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(value + "\n")
    return proc_sys


def _read(proc_sys: Path, name: str) -> str:
    return sysctl_path(proc_sys, name).read_text().strip()


def test_kspp_values_are_written(tmp_path):
    """Every KSPP sysctl the kernel has gets Talos' value; absent ones are reported as missing."""
    present = {k: "0" for k in KSPP_SYSCTLS if k != "dev.tty.ldisc_autoload"}
    proc_sys = _tree(tmp_path, present)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 slab_nomerge pti=on\n")
    report = apply_kernel_hardening(proc_sys, cmdline)
    assert _read(proc_sys, "kernel.kptr_restrict") == "2"
    assert _read(proc_sys, "net.core.bpf_jit_harden") == "2"
    assert _read(proc_sys, "fs.suid_dumpable") == "0"
    # Talos' values (pkg/kernel/kspp/kspp.go), stricter than the kernel's defaults.
    assert _read(proc_sys, "kernel.yama.ptrace_scope") == "2"
    assert _read(proc_sys, "kernel.randomize_va_space") == "2"
    assert _read(proc_sys, "dev.tty.legacy_tiocsti") == "0"
    assert _read(proc_sys, "vm.unprivileged_userfaultfd") == "0"
    assert report.missing == ["dev.tty.ldisc_autoload"] and report.ok and not report.warnings


def test_stricter_ptrace_scope_is_kept(tmp_path):
    """ptrace_scope=2 is a minimum: a kernel already at 3 stays at 3."""
    proc_sys = _tree(tmp_path, {"kernel.yama.ptrace_scope": "3"})
    report = apply_kernel_hardening(proc_sys, tmp_path / "no-cmdline")
    assert _read(proc_sys, "kernel.yama.ptrace_scope") == "3"
    assert report.kept == {"kernel.yama.ptrace_scope": "3"}


def test_missing_cmdline_parameters_warn():
    """slab_nomerge and pti=on missing from the command line are each named in a warning."""
    warnings = check_cmdline("console=ttyS0 pti=off")
    assert len(warnings) == 2 and "slab_nomerge" in warnings[0] and "pti=on" in warnings[1]
    assert check_cmdline("slab_nomerge pti=on quiet") == []


def test_sysctl_names_map_to_paths(tmp_path):
    """Dots become directories; a slash form keeps dotted interface names; '..' is refused."""
    assert sysctl_path(tmp_path, "net.ipv4.ip_forward") == tmp_path / "net/ipv4/ip_forward"
    assert sysctl_path(tmp_path, "net/ipv4/conf/eth0.100/rp_filter") == \
        tmp_path / "net/ipv4/conf/eth0.100/rp_filter"
    with pytest.raises(ValueError, match="not a valid name"):
        sysctl_path(tmp_path, "net/../../etc/passwd")


def test_machine_sysctls_follow_kubernetes_ones(tmp_path):
    """Kubernetes sysctls are set, then machine.sysctls (which win); an unknown one is an error naming it."""
    proc_sys = _tree(tmp_path, {"net.ipv4.ip_forward": "0", "vm.overcommit_memory": "0",
                                "fs.inotify.max_user_watches": "8192"})
    config = {"machine": {"sysctls": {"vm.overcommit_memory": "2",
                                      "fs.inotify.max_user_watches": "1048576",
                                      "net.no.such": "1"}}}
    report = apply_machine(config, proc_sys, tmp_path / "root")
    assert _read(proc_sys, "net.ipv4.ip_forward") == "1"
    assert _read(proc_sys, "vm.overcommit_memory") == "2"
    assert _read(proc_sys, "fs.inotify.max_user_watches") == "1048576"
    assert report.errors == [f"machine.sysctls: sysctl net.no.such does not exist on this kernel "
                             f"({proc_sys}/net/no/such)"]
    assert any("bridge-nf-call-iptables is missing" in w for w in report.warnings)


@pytest.mark.parametrize("path, ok", [
    ("/var/lib/app/conf", True),
    ("/etc/cri/conf.d/20-customization.part", True),
    ("/etc/nfsmount.conf", True),
    ("/etc/passwd", False),
    ("/var", False),
    ("/var/../etc/shadow", False),
    ("relative/path", False),
    ("/usr/bin/kubelet", False),
])
def test_allowed_paths(path, ok):
    """machine.files may write only under /var/ and the few /etc files Talos allows."""
    assert (check_file_path(path) is None) is ok


def test_files_ops_and_permissions(tmp_path):
    """create, overwrite and append write the content with the given mode; create never clobbers."""
    root = tmp_path / "root"
    write_file({"path": "/var/etc/a.conf", "content": "one\n", "permissions": 0o600, "op": "create"}, root)
    target = root / "var/etc/a.conf"
    assert target.read_text() == "one\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "unchanged" in write_file({"path": "/var/etc/a.conf", "content": "one\n",
                                      "permissions": 0o600, "op": "create"}, root)
    with pytest.raises(ValueError, match="op create but the file exists"):
        write_file({"path": "/var/etc/a.conf", "content": "two\n", "permissions": 0o600,
                    "op": "create"}, root)
    write_file({"path": "/var/etc/a.conf", "content": "more\n", "permissions": 0o640, "op": "append"}, root)
    assert target.read_text() == "one\nmore\n" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert "unchanged" in write_file({"path": "/var/etc/a.conf", "content": "more\n",
                                      "permissions": 0o640, "op": "append"}, root)
    write_file({"path": "/var/etc/a.conf", "content": "new\n", "permissions": 0o644, "op": "overwrite"}, root)
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o644


def test_symlink_escape_is_refused(tmp_path):
    """A symlink under /var pointing to /etc cannot be used to write outside the allowed paths."""
    root = tmp_path / "root"
    (root / "var").mkdir(parents=True)
    (root / "etc").mkdir()
    os.symlink(root / "etc", root / "var/sneaky")
    with pytest.raises(ValueError, match="outside the allowed paths"):
        write_file({"path": "/var/sneaky/passwd", "content": "x", "permissions": 0o644,
                    "op": "create"}, root)
    assert not (root / "etc/passwd").exists()


def test_bad_file_is_reported_others_written(tmp_path):
    """A refused file is an error naming it; the other files are still written."""
    config = {"machine": {"files": [
        {"path": "/etc/shadow", "content": "x", "permissions": 0o600, "op": "overwrite"},
        {"path": "/var/ok.txt", "content": "ok", "permissions": 0o644, "op": "create"}]}}
    report = apply_machine(config, tmp_path / "proc/sys", tmp_path / "root")
    assert len(report.errors) == 1 and "machine.files[0]" in report.errors[0]
    assert "'/etc/shadow' is not allowed" in report.errors[0]
    assert (tmp_path / "root/var/ok.txt").read_text() == "ok"


def test_machine_sysctls_may_relax_kspp(tmp_path):
    """The operator can lower a KSPP minimum through machine.sysctls (e.g. ptrace_scope=0)."""
    proc_sys = _tree(tmp_path, {"kernel.yama.ptrace_scope": "1"})
    report = apply_machine({"machine": {"sysctls": {"kernel.yama.ptrace_scope": "0"}}}, proc_sys,
                           tmp_path / "root")
    assert report.ok and _read(proc_sys, "kernel.yama.ptrace_scope") == "0"


def test_kubelet_protect_kernel_defaults_values(tmp_path):
    """The values kubelet's protectKernelDefaults insists on are all set."""
    wanted = {"vm.overcommit_memory": "1", "vm.panic_on_oom": "0", "kernel.panic": "10",
              "kernel.panic_on_oops": "1", "kernel.keys.root_maxkeys": "1000000",
              "kernel.keys.root_maxbytes": "25000000"}
    proc_sys = _tree(tmp_path, {k: "7" for k in wanted})
    apply_machine({"machine": {}}, proc_sys, tmp_path / "root")
    assert {k: _read(proc_sys, k) for k in wanted} == wanted
