"""``python -m talos_init``: run the init (as PID 1, or as a subreaper in tests)."""

import sys

from talos_init import lean

lean.apply()  # before structlog is imported (see talos_init/lean.py)

from talos_init.init import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
