"""``python3.11 -I -m talos_init.disk``: the one-shot ``var`` service.

Exit 0 once /var is mounted (disk or tmpfs); exit 1 with one log line naming
the disk and the reason when it refuses (a disk holding foreign data,
uncorrectable filesystem errors, a named disk that does not exist). An
installed /var is mounted at once; otherwise the service waits for the
machine config (``--machine-config`` appearing) and sets /var up from it.
The options exist for tests; the service runs with the defaults.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from talos_init.disk import DiskError
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


USAGE = ("usage: python3.11 -m talos_init.disk [--machine-config FILE] [--var DIR] [--etc DIR] "
         "[--report FILE] [--no-drivers] [--disks [PATTERN ...]]")
PATH_OPTIONS = {"--machine-config": "machine_config", "--var": "var", "--etc": "etc",
                "--report": "report"}


def parse(argv: list[str]) -> dict[str, Any]:
    """The options, for tests (the service runs with none). Not argparse: this process is on
    the boot path, and argparse is a twentieth of a second of imports under TCG."""
    opts: dict[str, Any] = {"machine_config": Path("/run/talos/config.json"), "var": Path("/var"),
                            "etc": Path("/etc"), "report": Path("/run/talos/var.json"),
                            "disks": None, "load_drivers": True}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in PATH_OPTIONS:
            if not args:
                raise SystemExit(f"{USAGE}\ntalos_init.disk: {arg} needs a value")
            opts[PATH_OPTIONS[arg]] = Path(args.pop(0))
        elif arg == "--no-drivers":  # load no storage drivers or ext4
            opts["load_drivers"] = False
        elif arg == "--disks":  # name patterns of the disks searched for EPHEMERAL
            opts["disks"] = []
            while args and not args[0].startswith("--"):
                opts["disks"].append(args.pop(0))
        else:
            raise SystemExit(f"{USAGE}\ntalos_init.disk: unknown argument {arg!r}")
    return opts


def main(argv: list[str] | None = None) -> int:
    o = parse(sys.argv[1:] if argv is None else argv)
    layout = Layout(var=o["var"], etc=o["etc"], report=o["report"],
                    disks=tuple(o["disks"]) if o["disks"] is not None else None,
                    load_drivers=o["load_drivers"])
    try:
        setup_at_boot(layout, config_reader(o["machine_config"]))
    except ConfigUnreadable as exc:
        log.error("config_unreadable", error=str(exc))
        return 1
    except (DiskError, OSError) as exc:
        log.error("var_failed", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
