"""An upload's bytes as they arrive: framed reads on the loop, a file object for a worker thread.

The worker (the image importer) pulls: each ``read`` waits for the next frame
from the TLS connection, so at most one frame (``MAX_FRAME``) is held and a
slow containerd slows the client down instead of filling memory.
"""

from __future__ import annotations

import asyncio
import struct

from talos_init.apid.protocol import BAD_REQUEST, MAX_FRAME, TIMEOUT, TOO_LARGE, ApiError
from talos_init.apid.tls import TlsConnection


class UploadBody:
    def __init__(self, tls: TlsConnection, *, max_total: int, idle_timeout: float):
        self._tls = tls
        self.max_total = max_total
        self.idle_timeout = idle_timeout
        self.total = 0  # payload bytes received
        self.done = False  # the end frame came

    async def _exactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                data = await asyncio.wait_for(self._tls.read(n - len(buf)), self.idle_timeout)
            except TimeoutError:
                raise ApiError(TIMEOUT, f"upload stalled: nothing for {self.idle_timeout:g}s after "
                                        f"{self.total} bytes") from None
            if not data:
                raise ApiError(BAD_REQUEST, f"the upload ended after {self.total} bytes without "
                                            "its end frame (client gone?)")
            buf += data
        return bytes(buf)

    async def read_frame(self) -> bytes:
        """The next frame's bytes; b"" once the upload has ended."""
        if self.done:
            return b""
        (n,) = struct.unpack(">I", await self._exactly(4))
        if n == 0:
            self.done = True
            return b""
        if n > MAX_FRAME:
            raise ApiError(BAD_REQUEST, f"upload frame of {n} bytes; at most {MAX_FRAME}")
        if self.total + n > self.max_total:
            raise ApiError(TOO_LARGE, f"upload larger than this node's limit of {self.max_total} "
                                      "bytes")
        self.total += n
        return await self._exactly(n)

    async def drain(self, timeout: float) -> None:
        """Read to the end frame (tar padding after the archive's end), within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while await self.read_frame():
                    pass
        except (ApiError, TimeoutError, ConnectionError, OSError):
            pass



class SyncReader:
    """``read(n)`` for a worker thread, fed by ``UploadBody`` on the event loop."""

    def __init__(self, body: UploadBody, loop: asyncio.AbstractEventLoop):
        self._body = body
        self._loop = loop
        self._buf = b""
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            if self._pos >= len(self._buf):
                self._buf = asyncio.run_coroutine_threadsafe(self._body.read_frame(),
                                                             self._loop).result()
                self._pos = 0
                if not self._buf:
                    break
            take = len(self._buf) - self._pos if n < 0 else min(n - len(out),
                                                                len(self._buf) - self._pos)
            out += self._buf[self._pos:self._pos + take]
            self._pos += take
        return bytes(out)


async def discard(tls: TlsConnection, timeout: float) -> None:
    """After a refusal the client may still be sending: drop what comes until it hangs up
    (osctl stops once it sees our reply), so closing does not reset the reply away."""
    try:
        async with asyncio.timeout(timeout):
            while await tls.read(65536):
                pass
    except (TimeoutError, ConnectionError, OSError):
        pass
