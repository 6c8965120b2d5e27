"""``python3.11 -I -m talos_init.machinesetup``: the one-shot ``machine-setup`` service.

After userdata and /var: Kubernetes modules and sysctls, machine.sysctls and
machine.files. Exits 1 when any config entry could not be applied (each is
logged with its path); what could be applied is applied.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from talos_init.hardening import apply_machine
from talos_init.log import get_logger

log = get_logger("hardening")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "/run/talos/config.json")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.error("config_unreadable", path=str(path), error=str(exc))
        return 1
    return 0 if apply_machine(config).ok else 1


if __name__ == "__main__":
    sys.exit(main())
