"""The machine config kept on the install disk (STATE, mounted at /system/state).

Every source (talos.config= on a first boot, apply-config in maintenance mode or on a
running node, a staged apply, a try's rollback) ends here: one validated config, later
boots read it before any talos.config= URL, as Talos reads STATE.

One record per file, each replaced atomically (``atomicfile``: write new, fsync, rename,
fsync the directory), so a power cut leaves the previous record or the new one, never
neither and never half:

- ``config.json``: ``{"format", "version", "time", "mode", "source", "sha256", "config"}``,
  the config text as applied; the sha256 is checked on every read.
- ``staged.json``: the same for ``apply-config --mode staged``; the next boot makes it
  the config (``take_staged``), then removes it.
- ``history.json``: the last ``HISTORY`` records without their config (version, time,
  mode, source, sha256); written after config.json, and completed from it on read.

Callers validate first: this module stores bytes, it does not judge them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from talos_init import atomicfile
from talos_init.log import get_logger

log = get_logger("userdata")

FORMAT = 1
HISTORY = 10
MODE = 0o600
CONFIG, STAGED, HISTORY_FILE = "config.json", "staged.json", "history.json"
META = ("version", "time", "mode", "source", "sha256")


class StoreError(Exception):
    """A record that cannot be read back (the message names the file and why)."""


class Store:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    # --- reading -------------------------------------------------------------------------

    def load(self) -> dict[str, Any] | None:
        """The current record (its ``config`` as bytes), None when nothing is stored."""
        return self._read(self.dir / CONFIG)

    def staged(self) -> dict[str, Any] | None:
        return self._read(self.dir / STAGED)

    def history(self) -> list[dict[str, Any]]:
        """Newest last; the current record is always in it, even when a cut came between."""
        try:
            entries = json.loads((self.dir / HISTORY_FILE).read_text())
            if not isinstance(entries, list):
                raise ValueError("not a list")
        except FileNotFoundError:
            entries = []
        except (OSError, ValueError) as exc:
            log.warning("config_history_unreadable", path=str(self.dir / HISTORY_FILE),
                        error=str(exc), effect="history starts again")
            entries = []
        current = self.load()
        if current is not None and not any(e.get("version") == current["version"] for e in entries):
            entries.append({k: current[k] for k in META})
        return entries[-HISTORY:]

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            rec = json.loads(raw)
            data = rec["config"].encode()
            if rec.get("format") != FORMAT:
                raise ValueError(f"format {rec.get('format')!r}, expected {FORMAT}")
            if hashlib.sha256(data).hexdigest() != rec["sha256"]:
                raise ValueError("sha256 mismatch: the stored config is damaged")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"{path}: {exc}") from None
        rec["config"] = data
        return rec

    # --- writing -------------------------------------------------------------------------

    def save(self, data: bytes, mode: str, source: str) -> dict[str, Any]:
        """Make ``data`` the stored config; returns its record (without the config)."""
        current = self._current_or_none()
        rec = self._record(data, mode, source, (current["version"] if current else 0) + 1)
        self._write(self.dir / CONFIG, rec)
        self._append_history(rec)
        log.info("config_stored", version=rec["version"], mode=mode, source=source,
                 sha256=rec["sha256"][:16], path=str(self.dir / CONFIG))
        return {k: rec[k] for k in META}

    def stage(self, data: bytes, source: str) -> dict[str, Any]:
        """Keep ``data`` for the next boot; the current config stays as it is."""
        current = self._current_or_none()
        rec = self._record(data, "staged", source, (current["version"] if current else 0) + 1)
        self._write(self.dir / STAGED, rec)
        log.info("config_staged", sha256=rec["sha256"][:16], path=str(self.dir / STAGED))
        return {k: rec[k] for k in META}

    def take_staged(self) -> dict[str, Any] | None:
        """At boot: a staged config becomes the config (then staged.json goes). A cut between
        the two leaves both, and the next boot finds the same sha256 and only removes it."""
        staged = self.staged()
        if staged is None:
            return None
        current = self._current_or_none()
        if current is None or current["sha256"] != staged["sha256"]:
            self.save(staged["config"], "staged", staged["source"])
        self._remove(self.dir / STAGED)
        return self.load()

    def unstage(self) -> bool:
        """Drop a staged config (reset; an operator changing their mind)."""
        if not (self.dir / STAGED).exists():
            return False
        self._remove(self.dir / STAGED)
        return True

    def wipe(self) -> None:
        """Forget every record (reset): the next boot has no stored config."""
        for name in (STAGED, CONFIG, HISTORY_FILE):
            self._remove(self.dir / name)
        log.warning("config_store_wiped", path=str(self.dir))

    def _current_or_none(self) -> dict[str, Any] | None:
        try:
            return self.load()
        except StoreError as exc:  # a damaged record is replaced, not kept
            log.warning("config_store_damaged", error=str(exc), effect="replaced by the new config")
            return None

    @staticmethod
    def _record(data: bytes, mode: str, source: str, version: int) -> dict[str, Any]:
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            raise StoreError(f"the config is not UTF-8 text: {exc}") from None
        return {"format": FORMAT, "version": version,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mode": mode,
                "source": source, "sha256": hashlib.sha256(data).hexdigest(), "config": text}

    def _write(self, path: Path, rec: dict[str, Any]) -> None:
        atomicfile.write_atomic(path, (json.dumps(rec, indent=1) + "\n").encode(), MODE,
                                dir_mode=0o700)

    def _append_history(self, rec: dict[str, Any]) -> None:
        entries = [e for e in self.history() if e.get("version") != rec["version"]]
        entries.append({k: rec[k] for k in META})
        atomicfile.write_atomic(self.dir / HISTORY_FILE,
                                (json.dumps(entries[-HISTORY:], indent=1) + "\n").encode(), MODE,
                                dir_mode=0o700)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
