"""``python -m talos_init``: run the init (as PID 1, or as a subreaper in tests)."""

import sys

# PID 1 never speaks TLS (apid does, in its own process). structlog imports
# asyncio, which imports ssl (4 MiB RSS) only if it can: block it here, in the
# entry point, so library users and tests are unaffected.
sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]

from talos_init.init import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
