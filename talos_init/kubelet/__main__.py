"""``python3.11 -I -m talos_init.kubelet``: write the kubelet's files, then become the kubelet.

Exit codes the supervisor can tell apart:
  0   never (the kubelet replaced us; its own exit status is what PID 1 sees)
  1   the machine config cannot drive a kubelet (logged: which field and why)
  69  EX_UNAVAILABLE: no kubelet binary in this image -> report "skipped: no kubelet binary"
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from pathlib import Path

from talos_init.kubelet.prep import IPAddress, KubeletPrepError, Layout, prepare, write_files
from talos_init.log import get_logger
from talos_init.toolpath import ensure_path

log = get_logger("kubelet")
EXIT_NO_KUBELET = 69


def node_addresses() -> list[IPAddress]:
    """Global and loopback addresses of this node, in kernel order (netlink)."""
    from pyroute2 import IPRoute  # only here: the kubelet launcher is a child, never PID 1

    with IPRoute() as ipr:
        return [ipaddress.ip_address(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()
                if a.get_attr("IFA_ADDRESS")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="talos_init.kubelet")
    p.add_argument("--kubelet", default="/usr/local/bin/kubelet")
    p.add_argument("--machine-config", default="/run/talos/config.json")
    p.add_argument("--etc", type=Path, default=Layout.etc)
    p.add_argument("--var-lib", type=Path, default=Layout.var_lib)
    p.add_argument("--runtime-endpoint", default=Layout.runtime_endpoint)
    p.add_argument("--healthz-port", type=int, default=Layout.healthz_port)
    args = p.parse_args(argv)
    if not os.access(args.kubelet, os.X_OK):
        log.warning("kubelet_skipped",
                    reason=f"skipped: no kubelet binary in this image ({args.kubelet})")
        return EXIT_NO_KUBELET
    layout = Layout(etc=args.etc, var_lib=args.var_lib, runtime_endpoint=args.runtime_endpoint,
                    healthz_port=args.healthz_port)
    try:
        config = json.loads(Path(args.machine_config).read_text())
        subnets = ((config.get("machine") or {}).get("kubelet") or {}).get("nodeIP") or {}
        addresses = node_addresses() if subnets.get("validSubnets") else None
        prepared = prepare(config, layout, addresses)
        prepared.notes += write_files(prepared, layout)
    except (KubeletPrepError, OSError, ValueError) as exc:
        log.error("kubelet_prep_failed", error=str(exc))
        return 1
    for note in prepared.notes:
        log.info("kubelet_prep_note", note=note)
    ensure_path()  # runc, the shims, mount: the daemon finds them through PATH
    argv_exec = [args.kubelet, *prepared.argv_flags]
    log.info("kubelet_exec", argv=argv_exec)
    try:
        os.execv(args.kubelet, argv_exec)
    except OSError as exc:
        log.error("kubelet_exec_failed", binary=args.kubelet, error=str(exc))
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
