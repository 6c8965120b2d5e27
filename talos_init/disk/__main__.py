"""``python3.11 -I -m talos_init.disk``: the one-shot ``var`` service.

Exit 0 once /var is mounted (disk or tmpfs); exit 1 with one log line naming
the disk and the reason when it refuses (a disk holding foreign data,
uncorrectable filesystem errors, a named disk that does not exist).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import structlog

from talos_init.disk.blockdev import DiskError
from talos_init.disk.var import Layout, setup

log = structlog.get_logger("disk")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config_path = Path(args[0] if args else "/run/talos/config.json")
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        config = None  # no machine config: no disk named, so /var is tmpfs
        log.warning("config_missing", path=str(config_path))
    except (OSError, ValueError) as exc:
        log.error("config_unreadable", path=str(config_path), error=str(exc))
        return 1
    try:
        setup(config, Layout())
    except (DiskError, OSError) as exc:
        log.error("var_failed", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
