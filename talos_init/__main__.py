"""``python -m talos_init``: run the init (as PID 1, or as a subreaper in tests)."""

import sys

from talos_init.init import main

if __name__ == "__main__":
    sys.exit(main())
