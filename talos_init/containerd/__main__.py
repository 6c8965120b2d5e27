"""``python3.11 -I -m talos_init.containerd``: write containerd's config, then become containerd.

os.execv keeps the pid the supervisor started, so containerd's own
sd_notify READY=1 (sent when it serves its socket) reaches PID 1 and
SIGTERM from the supervisor reaches containerd directly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from talos_init.containerd.config import (
    ContainerdConfigError,
    Layout,
    install_default_cni,
    write_all,
)
from talos_init.log import get_logger
from talos_init.toolpath import ensure_path

log = get_logger("containerd")
DEFAULT_CNI = Path(__file__).resolve().parents[2] / "configs/cni/99-talos-init-default.conflist"
# Where the image ships it. Named 99-: containerd uses the first conf by name, so any network
# the cluster installs later (05-cilium, 10-flannel, 10-weave...) takes precedence.
IMAGE_CNI = Path("/usr/lib/talos/cni/99-talos-init-default.conflist")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="talos_init.containerd")
    p.add_argument("--machine-config", default="/run/talos/config.json")
    p.add_argument("--containerd", default="/usr/bin/containerd")
    p.add_argument("--config", type=Path, default=Layout.config)
    p.add_argument("--hosts-dir", type=Path, default=Layout.hosts_dir)
    p.add_argument("--root", type=Path, default=Layout.root)
    p.add_argument("--state", type=Path, default=Layout.state)
    p.add_argument("--address", type=Path, default=Layout.address)
    p.add_argument("--cni-conf-dir", type=Path, default=Layout.cni_conf_dir)
    p.add_argument("--cni-bin-dir", type=Path, default=Layout.cni_bin_dir)
    p.add_argument("--customization", type=Path, default=Layout.customization)
    p.add_argument("--default-cni", type=Path,
                   default=IMAGE_CNI if IMAGE_CNI.exists() else DEFAULT_CNI)
    args = p.parse_args(argv)
    layout = Layout(config=args.config, hosts_dir=args.hosts_dir, root=args.root, state=args.state,
                    address=args.address, cni_bin_dir=args.cni_bin_dir,
                    cni_conf_dir=args.cni_conf_dir, customization=args.customization)
    try:
        config = json.loads(Path(args.machine_config).read_text())
    except FileNotFoundError:
        config = None  # defaults: no mirrors
        log.warning("machine_config_missing", path=args.machine_config)
    except (OSError, ValueError) as exc:
        log.error("machine_config_unreadable", path=args.machine_config, error=str(exc))
        return 1
    try:
        for note in write_all(config, layout):
            log.info("containerd_config_note", note=note)
        if not args.default_cni.exists():
            # Not fatal: containerd runs, pods wait for the cluster's CNI.
            log.warning("cni_default_missing", path=str(args.default_cni))
        elif install_default_cni(layout.cni_conf_dir, args.default_cni):
            log.info("cni_default_installed", conf_dir=str(layout.cni_conf_dir),
                     conf=args.default_cni.name)
        for d in (layout.root, layout.state, layout.address.parent):
            d.mkdir(parents=True, exist_ok=True, mode=0o711)
    except (ContainerdConfigError, OSError) as exc:
        log.error("containerd_config_failed", error=str(exc))
        return 1
    ensure_path()  # runc, the shims, mount: the daemon finds them through PATH
    log.info("containerd_exec", binary=args.containerd, config=str(layout.config))
    try:
        os.execv(args.containerd, [args.containerd, "--config", str(layout.config)])
    except OSError as exc:
        log.error("containerd_exec_failed", binary=args.containerd, error=str(exc))
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
