"""``python3.11 -I -m talos_init.boot COMMAND``: the node's boot-slot operations.

    install DISK            fill DISK's ESP: systemd-boot, loader.conf, this image as slot A
    mark-good               drop this boot's counter (service boot-assess)
    trial-deadline SECONDS  on trial and not marked good by then: reboot (service boot-deadline)
    upgrade FILE [--tries N] [--sha256 HEX]   FILE to the other slot, first at the next boot
    rollback                the other slot first at the next boot
    status                  running slot, each slot's entry, state and version

Prints one JSON object; on refusal exits 1 with {"error": "..."} (the reason and the way out).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from talos_init.boot import node, slots


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, rest = args[0], args[1:]
    try:
        if cmd == "install" and len(rest) == 1:
            out = node.install(rest[0])
        elif cmd == "mark-good" and not rest:
            out = node.mark_good()
        elif cmd == "trial-deadline" and len(rest) == 1:
            out = {"result": node.trial_deadline(float(rest[0]))}
        elif cmd == "upgrade" and rest:
            tries, sha = slots.DEFAULT_TRIES, None
            path = Path(rest.pop(0))
            while rest:
                opt = rest.pop(0)
                if opt == "--tries" and rest:
                    tries = int(rest.pop(0))
                elif opt == "--sha256" and rest:
                    sha = rest.pop(0)
                else:
                    raise node.BootError(f"upgrade: unknown option {opt!r}")
            out = node.upgrade(path, tries, sha)
        elif cmd == "rollback" and not rest:
            out = node.rollback()
        elif cmd == "status" and not rest:
            out = node.status()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (node.BootError, OSError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
