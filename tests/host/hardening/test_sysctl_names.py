"""Every sysctl we set is spelled as the running kernel spells it (read-only: nothing is written)."""

from __future__ import annotations

from pathlib import Path

from talos_init.hardening import KSPP_SYSCTLS, KUBERNETES_SYSCTLS, sysctl_path

# Present only with a kernel option or a module: Yama LSM, br_netfilter.
OPTIONAL = {"kernel.yama.ptrace_scope", "net.bridge.bridge-nf-call-iptables",
            "net.bridge.bridge-nf-call-ip6tables"}


def test_names_exist_on_this_kernel():
    """A typo in a sysctl name would only show as 'missing' at boot; here it fails."""
    absent = [n for n in [*KSPP_SYSCTLS, *KUBERNETES_SYSCTLS]
              if n not in OPTIONAL and not sysctl_path(Path("/proc/sys"), n).exists()]
    assert absent == []
