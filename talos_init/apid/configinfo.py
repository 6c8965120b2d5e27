"""The machine config as osctl edit and patch start from it, and its version and history.

``raw`` is the config text as applied (secrets included: os:admin only), so that a
patch or an edit made in osctl sends back a whole config. ``history`` is the store's
record (version, time, mode, source, sha256; no config text).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from collections.abc import Callable

from talos_init.apid.protocol import FAILED_PRECONDITION, ApiError
from talos_init.paths import Paths


def raw(paths: Paths) -> dict[str, Any]:
    try:
        data = paths.config.read_bytes()
    except FileNotFoundError:
        raise ApiError(FAILED_PRECONDITION, f"no machine config yet ({paths.config})") from None
    return {"config": data.decode(), "sha256": hashlib.sha256(data).hexdigest()}


def history(paths: Paths, find_store: Callable[[], Any]) -> dict[str, Any]:
    """The stored config's record and the last ones, and whether /run/talos is that config
    (a try in progress, or a config that was never stored, is not)."""
    from talos_init.userdata.configstore import StoreError

    running = hashlib.sha256(paths.config.read_bytes()).hexdigest() if paths.config.exists() \
        else None
    try:
        source = paths.config_source.read_text().strip()
    except FileNotFoundError:
        source = None
    store = find_store()
    if store is None:
        return {"stored": False, "running_sha256": running, "running_source": source,
                "history": [], "note": "no STATE partition: the config is not kept on disk"}
    try:
        current = store.load()
        staged = store.staged()
    except StoreError as e:
        raise ApiError(FAILED_PRECONDITION, str(e)) from None
    meta = ("version", "time", "mode", "source", "sha256")
    return {"stored": current is not None, "running_sha256": running, "running_source": source,
            "current": {k: current[k] for k in meta} if current else None,
            "staged": {k: staged[k] for k in meta} if staged else None,
            "history": store.history()}


def state_store(root: Path, directory: Path | None = None) -> Callable[[], Any]:
    """The store on STATE (mounted when needed; None without STATE), or in ``directory``
    (apid's --config-store, for tests: a plain directory instead of a partition)."""
    def find() -> Any:
        from talos_init.disk import state
        from talos_init.userdata.configstore import Store

        if directory is not None:
            return Store(directory)
        where = state.ensure_mounted(Paths(root).state)
        return Store(where) if where is not None else None
    return find
