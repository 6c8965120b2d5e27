"""``python3.11 -I -m talos_init.disk``: the one-shot ``var`` service.

Exit 0 once /var is mounted (disk or tmpfs); exit 1 with one log line naming
the disk and the reason when it refuses (a disk holding foreign data,
uncorrectable filesystem errors, a named disk that does not exist). An
installed /var is mounted at once; otherwise the service waits for the
machine config (``--machine-config`` appearing) and sets /var up from it.
The options exist for tests; the service runs with the defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from talos_init.disk.blockdev import DiskError
from talos_init.disk.var import Layout, setup_at_boot
from talos_init.log import get_logger

log = get_logger("disk")


class ConfigUnreadable(Exception):
    pass


def config_reader(path: Path):
    """None while ``path`` does not exist (userdata writes it atomically), then its content."""
    def read() -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigUnreadable(f"{path}: {exc}") from None
    return read


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="talos_init.disk")
    p.add_argument("--machine-config", type=Path, default=Path("/run/talos/config.json"))
    p.add_argument("--var", type=Path, default=Layout.var)
    p.add_argument("--etc", type=Path, default=Layout.etc)
    p.add_argument("--report", type=Path, default=Layout.report)
    p.add_argument("--disks", nargs="*", default=None,
                   help="name patterns of the disks searched for EPHEMERAL (default: all)")
    p.add_argument("--no-drivers", action="store_true", help="do not modprobe storage drivers")
    args = p.parse_args(argv)
    layout = Layout(var=args.var, etc=args.etc, report=args.report,
                    disks=tuple(args.disks) if args.disks is not None else None,
                    load_drivers=not args.no_drivers)
    try:
        setup_at_boot(layout, config_reader(args.machine_config))
    except ConfigUnreadable as exc:
        log.error("config_unreadable", error=str(exc))
        return 1
    except (DiskError, OSError) as exc:
        log.error("var_failed", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
