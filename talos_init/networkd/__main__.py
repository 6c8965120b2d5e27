"""Entry point: ``python3.11 -I -m talos_init.networkd [--root DIR] ...``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from talos_init import bare_package, log

# Before the first pyroute2 import: its __init__ would import the whole library.
bare_package.install("pyroute2")

from talos_init.networkd.daemon import Networkd, Options  # noqa: E402 (pyroute2 installed first)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="networkd", description=__doc__)
    p.add_argument(
        "--root", type=Path, default=Path("/"), help="prefix for every host path (tests)"
    )
    p.add_argument(
        "--cmdline", type=Path, help="kernel command line file (default <root>/proc/cmdline)"
    )
    p.add_argument(
        "--config", type=Path, help="effective config (default <root>/run/talos/config.json)"
    )
    p.add_argument("--state-dir", type=Path, help="leases (default <root>/run/talos/networkd)")
    p.add_argument(
        "--link-timeout", type=float, default=30.0, help="seconds to wait for configured links"
    )
    p.add_argument("--no-sethostname", action="store_true", help="write /etc/hostname only")
    p.add_argument("--json-logs", action="store_true", help="one JSON object per log line")
    args = p.parse_args(argv)
    # pyroute2 logs through the standard library; keep its warnings, one line each.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    log.configure(json=args.json_logs)  # stderr, which the supervisor captures
    opts = Options(
        root=args.root,
        cmdline=args.cmdline,
        config=args.config,
        state_dir=args.state_dir,
        link_timeout=args.link_timeout,
        set_hostname=not args.no_sethostname,
    )
    return asyncio.run(Networkd(opts).run())


if __name__ == "__main__":
    sys.exit(main())
