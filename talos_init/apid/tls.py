"""Server-side TLS over an asyncio stream, driven by hand through ssl.MemoryBIO.

Why not ``StreamWriter.start_tls``: when asyncio's handshake fails it drops
the connection without sending OpenSSL's alert, so a client with an expired
or foreign certificate would only see "connection closed". Here the alert
("certificate required", "unknown ca", "certificate expired") is flushed to
the client before hanging up, and osctl can say in words what went wrong.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any


class TlsConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 ctx: ssl.SSLContext, *, write_timeout: float = 30.0):
        self._reader = reader
        self._writer = writer
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = ctx.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._buffer = bytearray()
        self._write_timeout = write_timeout

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self._write_timeout)

    async def _fill(self) -> None:
        data = await self._reader.read(65536)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def handshake(self, on_progress: Callable[[int], None] = lambda progress: None) -> None:
        """Raise ssl.SSLError (after sending the alert) when the client is refused.

        ``on_progress(n)`` is called each time bytes from the client arrive:
        1 while its ClientHello is incomplete, 2 once we have answered it."""
        answered = False
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                answered = answered or self._outgoing.pending > 0
                await self._flush()
                await self._fill()
                on_progress(2 if answered else 1)
            except ssl.SSLError:
                try:
                    await self._flush()  # the alert tells the client why
                except (TimeoutError, ConnectionError):
                    pass  # it is gone already; the refusal stands either way
                raise
        await self._flush()

    def peercert(self) -> dict[str, Any] | None:
        return self._ssl.getpeercert()

    def peercert_der(self) -> bytes:
        return self._ssl.getpeercert(binary_form=True) or b""

    async def read(self, n: int = 65536) -> bytes:
        """Up to n bytes of plaintext; b"" when the client has closed."""
        if self._buffer:
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
            return data
        while True:
            try:
                return self._ssl.read(n)
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def readline(self, limit: int) -> bytes:
        """One line including b"\\n", or what came before EOF; ValueError beyond ``limit``."""
        while True:
            nl = self._buffer.find(b"\n")
            if nl >= 0:
                if nl + 1 > limit:
                    raise ValueError(f"line longer than {limit} bytes")
                line = bytes(self._buffer[:nl + 1])
                del self._buffer[:nl + 1]
                return line
            if len(self._buffer) > limit:
                raise ValueError(f"line longer than {limit} bytes")
            try:
                chunk = self._ssl.read(65536)
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                chunk = b""
            if not chunk:
                line, self._buffer = bytes(self._buffer), bytearray()
                return line
            self._buffer += chunk

    async def write(self, data: bytes) -> None:
        self._ssl.write(data)
        await self._flush()

    async def close(self) -> None:
        try:
            self._ssl.unwrap()
        except ssl.SSLError:
            pass  # no close_notify back from the client: we are closing anyway
        try:
            await self._flush()
        except (TimeoutError, ConnectionError):
            pass
