"""``python3.11 -I -m talos_init.disk``: the one-shot ``var`` service.

Exit 0 once /var is mounted (disk or tmpfs); exit 1 with one log line naming
the disk and the reason when it refuses (a disk holding foreign data,
uncorrectable filesystem errors, a named disk that does not exist). The
options exist for tests; the service runs with the defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from talos_init.disk.blockdev import DiskError
from talos_init.disk.var import Layout, setup
from talos_init.log import get_logger

log = get_logger("disk")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="talos_init.disk")
    p.add_argument("--machine-config", type=Path, default=Path("/run/talos/config.json"))
    p.add_argument("--var", type=Path, default=Layout.var)
    p.add_argument("--etc", type=Path, default=Layout.etc)
    p.add_argument("--report", type=Path, default=Layout.report)
    args = p.parse_args(argv)
    try:
        config = json.loads(args.machine_config.read_text())
    except FileNotFoundError:
        config = None  # no machine config: no disk named, so /var is tmpfs
        log.warning("config_missing", path=str(args.machine_config))
    except (OSError, ValueError) as exc:
        log.error("config_unreadable", path=str(args.machine_config), error=str(exc))
        return 1
    try:
        setup(config, Layout(var=args.var, etc=args.etc, report=args.report))
    except (DiskError, OSError) as exc:
        log.error("var_failed", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
