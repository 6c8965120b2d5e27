"""``python3.11 -I -m talos_init.machinesetup``: the one-shot ``machine-setup`` service.

After userdata, /var and kernel-modules: machine.kernel.modules (modprobe, before the
sysctls a module may bring), Kubernetes sysctls, machine.sysctls, machine.files, then
containerd's registry hosts from machine.registries, and /etc/machine-id
(talos_init.machineid: kept on /var, so after var).
containerd is already running by then: it reads hosts.toml at every pull, but
a CRI customization (machine.files' /etc/cri/conf.d/20-customization.part) is
read only at its start, so writing one restarts containerd through PID 1.
Exits 1 when any entry could not be applied (each is logged with its path);
what could be applied is applied.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from talos_init.containerd.config import CUSTOMIZATION, ContainerdConfigError, Layout, write_hosts
from talos_init.hardening import apply_machine
from talos_init.log import get_logger
from talos_init.machineid import PRODUCT_UUID
from talos_init.machineid import ensure as ensure_machine_id
from talos_init.paths import Paths

log = get_logger("hardening")


def restart_containerd(control_socket: Path) -> None:
    """Ask PID 1 to restart containerd (raises ControlError); the kubelet is not running yet."""
    import asyncio  # only on this path: most nodes have no CRI customization

    from talos_init.control.client import ControlClient

    reply = asyncio.run(ControlClient(control_socket).call("services.restart", {"id": "containerd"}))
    log.info("containerd_restarted", reason=f"{CUSTOMIZATION} written", state=reply.get("state"))


def load_modules(modules: list[dict], modprobe: str) -> bool:
    """machine.kernel.modules (KernelModuleConfig): ``modprobe NAME PARAM=VALUE...`` each."""
    import subprocess  # only on this path: most configs load no module

    ok = True
    for m in modules:
        argv = [modprobe, "--", m["name"], *m.get("parameters", [])]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            r = subprocess.CompletedProcess(argv, -1, "", str(exc))
        if r.returncode == 0:
            log.info("kernel_module_loaded", module=m["name"],
                     parameters=" ".join(m.get("parameters", [])))
        else:
            log.error("kernel_module_failed", module=m["name"], status=r.returncode,
                      error=(r.stderr or r.stdout).strip()[-300:])
            ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="talos_init.machinesetup")  # the options exist for tests
    p.add_argument("config", nargs="?", type=Path, default=Path("/run/talos/config.json"))
    p.add_argument("--proc-sys", type=Path, default=Path("/proc/sys"))
    p.add_argument("--root", type=Path, default=Path("/"))
    p.add_argument("--hosts-dir", type=Path, default=Layout.hosts_dir)
    p.add_argument("--control-socket", type=Path, default=Paths().control_socket)
    p.add_argument("--modprobe", default="/usr/sbin/modprobe")
    p.add_argument("--product-uuid", type=Path, default=PRODUCT_UUID)
    args = p.parse_args(argv)
    try:
        config = json.loads(args.config.read_text())
    except (OSError, ValueError) as exc:
        log.error("config_unreadable", path=str(args.config), error=str(exc))
        return 1
    modules = ((config.get("machine") or {}).get("kernel") or {}).get("modules") or []
    modules_ok = load_modules(modules, args.modprobe)
    report = apply_machine(config, args.proc_sys, args.root)
    ok = report.ok and modules_ok
    try:
        for note in write_hosts(config, args.hosts_dir):
            log.info("registry_hosts_note", note=note)
    except (ContainerdConfigError, OSError, ValueError) as exc:
        log.error("registry_hosts_failed", error=str(exc))
        ok = False
    try:
        machine_id, source = ensure_machine_id(args.root / "etc/machine-id",
                                               args.root / "var/lib/talos/machine-id",
                                               args.product_uuid)
        log.info("machine_id", machine_id=machine_id, source=source)
    except OSError as exc:  # the kubelet and CNIs need it: the service fails, saying why
        log.error("machine_id_failed", error=str(exc))
        ok = False
    if not report.files.get(CUSTOMIZATION, "unchanged").startswith("unchanged"):
        from talos_init.control.protocol import ControlError

        try:
            restart_containerd(args.control_socket)
        except ControlError as exc:
            log.error("containerd_restart_failed", reason=f"{CUSTOMIZATION} written",
                      error=str(exc))
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
