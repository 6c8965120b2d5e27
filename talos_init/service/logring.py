"""A bounded ring of one service's output lines, with followers and an optional file.

Bytes arrive in arbitrary chunks from the service's stdout/stderr pipe. A line
longer than ``max_line`` is cut: its first ``max_line`` bytes are kept with a
marker saying how much was dropped, so a runaway line never evicts the whole
ring and never disappears without a trace.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from talos_init.log import get_logger

log = get_logger("service")

Follower = Callable[[str], None]
FILE_LIMIT = 16 * 1024 * 1024  # then <id>.log becomes <id>.log.1


class LogRing:
    def __init__(self, ring_bytes: int = 256 * 1024, max_line: int = 4096):
        self.ring_bytes = ring_bytes
        self.max_line = max_line
        self._lines: deque[str] = deque()
        self._size = 0
        self._partial = bytearray()
        self._dropping = 0  # bytes dropped from the current over-long line
        self._followers: list[Follower] = []
        self._file: int | None = None
        self._file_path: Path | None = None
        self._file_size = 0
        self.lines_total = 0
        self.bytes_dropped = 0

    def feed(self, data: bytes) -> None:
        while data:
            nl = data.find(b"\n")
            chunk, data = (data, b"") if nl < 0 else (data[:nl], data[nl + 1:])
            if self._dropping:
                self._dropping += len(chunk)
            else:
                room = self.max_line - len(self._partial)
                self._partial += chunk[:room]
                if len(chunk) > room:
                    self._dropping = len(chunk) - room
            if nl >= 0:
                self._end_line()

    def flush(self) -> None:
        """End of stream: keep an unterminated last line."""
        if self._partial or self._dropping:
            self._end_line()

    def _end_line(self) -> None:
        text = self._partial.decode("utf-8", "replace")
        if self._dropping:
            text += f" [line cut: {self._dropping} more bytes dropped]"
            self.bytes_dropped += self._dropping
        self._partial.clear()
        self._dropping = 0
        self._append(text)

    def _append(self, text: str) -> None:
        size = len(text) + 1
        self._lines.append(text)
        self._size += size
        self.lines_total += 1
        while self._size > self.ring_bytes and len(self._lines) > 1:
            self._size -= len(self._lines.popleft()) + 1
        for follower in list(self._followers):
            try:
                follower(text)
            except Exception:  # noqa: BLE001 - a broken follower is dropped, never breaks logging
                self._followers.remove(follower)
        if self._file is not None:
            self._write_file(text)

    def tail(self, n: int | None = None) -> list[str]:
        lines = list(self._lines)
        return lines if n is None else lines[-n:] if n > 0 else []

    def follow(self, follower: Follower) -> Callable[[], None]:
        self._followers.append(follower)
        return lambda: self._followers.remove(follower) if follower in self._followers else None

    # -- file sink: /var/log/<id>.log once /var is persistent ---------------------

    def open_file(self, path: Path) -> None:
        """Start appending to ``path``; what the ring holds is written first."""
        self.close_file()
        try:
            self._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            self._file_size = os.fstat(self._file).st_size
        except OSError as exc:  # policy: warn, keep the ring
            log.warning("service_log_file_failed", path=str(path), error=str(exc))
            self._file = None
            return
        self._file_path = path
        for line in self._lines:
            self._write_file(line)

    def _write_file(self, text: str) -> None:
        assert self._file is not None and self._file_path is not None
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        data = f"{stamp} {text}\n".encode("utf-8", "replace")
        try:
            if self._file_size + len(data) > FILE_LIMIT:
                os.close(self._file)
                os.replace(self._file_path, self._file_path.with_name(self._file_path.name + ".1"))
                self._file = os.open(self._file_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                                     | os.O_CLOEXEC, 0o640)
                self._file_size = 0
            os.write(self._file, data)
            self._file_size += len(data)
        except OSError as exc:  # disk full or gone: stop writing, keep the ring
            log.warning("service_log_file_failed", path=str(self._file_path), error=str(exc))
            self.close_file()

    def close_file(self) -> None:
        if self._file is not None:
            try:
                os.close(self._file)
            except OSError:
                pass
        self._file = None
