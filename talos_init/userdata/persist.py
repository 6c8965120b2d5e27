"""``python3.11 -I -m talos_init.userdata.persist``: the one-shot ``config-store`` service.

Once the config is in /run/talos and /var is set up (so a first boot's STATE exists),
keep a config that came from anywhere but the store (talos.config=, apply-config in
maintenance mode) on STATE, so that later boots need neither the URL nor the network.
A config read from the store, or one the store already holds (same sha256), writes
nothing. No STATE (no install disk, or a disk of the older layout): nothing is kept,
and the log says so. Exit 0 in every case but a write that failed (exit 1).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from talos_init import log as tlog
from talos_init.log import get_logger
from talos_init.paths import Paths
from talos_init.userdata import configstore

log = get_logger("userdata")


def persist(paths: Paths) -> str:
    """What was done: stored | unchanged | from-store | no-state."""
    from talos_init.disk import state

    try:
        source = paths.config_source.read_text().strip()
    except FileNotFoundError:
        source = "url"  # written by a userdata from before config.source existed
    if source == "store":
        return "from-store"
    data = paths.config.read_bytes()
    if state.ensure_mounted(paths.state, sys_block=paths.at("/sys/class/block"),
                            dev=str(paths.at("/dev"))) is None:
        log.warning("config_not_stored", reason="no STATE partition (no install disk, or a "
                    "disk of the older layout)", effect="the next boot needs talos.config= again")
        return "no-state"
    st = configstore.Store(paths.state)
    try:
        current = st.load()
    except configstore.StoreError:
        current = None
    if current is not None and current["sha256"] == hashlib.sha256(data).hexdigest():
        return "unchanged"
    mode = "maintenance" if source == "apply-config" else "boot"
    st.save(data, mode, "talos.config=" if source == "url" else source)
    return "stored"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    tlog.configure()
    paths = Paths(Path(args[1]) if args[:1] == ["--root"] and len(args) > 1 else Path("/"))
    try:
        what = persist(paths)
    except Exception as exc:  # noqa: BLE001 - one line naming the failure, and exit 1
        log.error("config_store_failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    log.info("config_store_done", result=what)
    return 0


if __name__ == "__main__":
    sys.exit(main())
