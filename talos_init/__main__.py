"""``python -m talos_init``: run the init (as PID 1, or as a subreaper in tests)."""

import os
import sys


def main() -> int:
    loader = None
    if os.getpid() == 1:  # the real boot, before the bulk of PID 1 loads
        loader = _start_preload()
    from talos_init.init import main as init_main

    return init_main(preload=loader)


def _start_preload():
    """The kernel modules load in a child while PID 1 imports the rest of itself
    (talos_init.preload); without it, each phase loads what it needs."""
    try:
        from talos_init import preload

        return preload.start(preload.boot_stages())
    except Exception as exc:  # noqa: BLE001 - PID 1 must come up; the phases load them instead
        print(f"talos-init: kernel module preload not started: {exc!r}", file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
