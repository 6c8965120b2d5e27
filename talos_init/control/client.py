"""asyncio client of the control socket, used by apid (never by PID 1).

One connection per call keeps it simple: a unary call or a stream, then the
connection closes. Closing the connection is how a stream is cancelled.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from talos_init.control import protocol
from talos_init.control.protocol import ControlError

_ids = itertools.count(1)


class ControlClient:
    def __init__(self, path: Path | str, *, timeout: float = 10.0, max_line: int = 4 * 1024 * 1024):
        self.path = str(path)
        self.timeout = timeout  # connect and unary replies; streams may wait forever
        self.max_line = max_line

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(
                asyncio.open_unix_connection(self.path, limit=self.max_line), self.timeout)
        except (TimeoutError, OSError) as e:
            raise ControlError(protocol.UNAVAILABLE,
                               f"PID 1 control socket {self.path} unreachable: {e or 'timeout'}") from None

    @staticmethod
    async def _read(reader: asyncio.StreamReader, timeout: float | None) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            raise ControlError(protocol.UNAVAILABLE, "PID 1 did not answer in time") from None
        except (ValueError, asyncio.LimitOverrunError):
            raise ControlError(protocol.TOO_LARGE, "reply from PID 1 too large") from None
        except OSError as e:
            raise ControlError(protocol.UNAVAILABLE, f"control socket failed: {e}") from None
        if not line:
            raise ControlError(protocol.UNAVAILABLE, "PID 1 closed the control connection")
        msg = protocol.parse_response(line)
        err = msg.get("error")
        if err is not None:
            raise ControlError(str(err.get("code", protocol.INTERNAL)), str(err.get("message", "")))
        return msg

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        reader, writer = await self._open()
        try:
            writer.write(protocol.request(next(_ids), method, params))
            msg = await self._read(reader, self.timeout)
            if "result" not in msg:
                raise ControlError(protocol.BAD_REQUEST, f"{method} is a stream, not a call")
            return msg["result"]
        finally:
            writer.close()

    async def stream(self, method: str, params: dict[str, Any] | None = None) -> AsyncIterator[Any]:
        """Yield items until PID 1 ends the stream; raise ControlError on its error."""
        reader, writer = await self._open()
        try:
            writer.write(protocol.request(next(_ids), method, params))
            while True:
                msg = await self._read(reader, None)
                if msg.get("end"):
                    return
                if "item" in msg:
                    yield msg["item"]
                elif "result" in msg:  # a unary method read as a one-item stream
                    yield msg["result"]
                    return
        finally:
            writer.close()
