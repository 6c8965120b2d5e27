"""apid's TLS server: mutual TLS 1.3, one call per connection, roles from the client certificate.

Every connection is counted before its handshake, so a crowd of silent
clients fills at most ``max_connections`` slots and each one is dropped when
its handshake or request deadline passes; the others are served meanwhile.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from talos_init.apid import maintenance, protocol
from talos_init.apid.calls import Calls
from talos_init.apid.protocol import ApiError
from talos_init.apid.tls import TlsConnection
from talos_init.apid.upload import UploadBody, discard
from talos_init.log import get_logger

log = get_logger("apid")


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    max_streams: int = 16  # open follow/stream calls at once, all clients together
    max_request: int = 64 * 1024  # bytes in the request line
    handshake_timeout: float = 10.0
    request_timeout: float = 10.0  # from handshake done to a complete request line
    write_timeout: float = 30.0  # a client that stops reading is dropped after this
    call_timeout: float = 60.0  # unary calls
    max_uploads: int = 2  # image imports at once
    max_upload: int = 4 << 30  # bytes in one upload
    upload_idle_timeout: float = 60.0  # an upload with no byte for this long is dropped
    upload_timeout: float = 3600.0  # the whole import, unpacking included
    drain_timeout: float = 10.0  # after a refusal, how long we read on so the client sees it


def server_context(cert_file: str, key_file: str, ca_pem: str) -> ssl.SSLContext:
    """TLS 1.3 only, a client certificate signed by the machine CA required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca_pem)
    ctx.load_cert_chain(cert_file, key_file)
    ctx.num_tickets = 0  # one call per connection: resumption tickets would only cost bytes
    return ctx


def roles_of(peercert: dict[str, Any] | None) -> set[str]:
    """The os:* roles in the certificate's Organization values, as Talos reads them."""
    roles: set[str] = set()
    for rdn in (peercert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "organizationName" and value in protocol.ROLES:
                roles.add(value)
    return roles


def common_name(peercert: dict[str, Any] | None) -> str:
    for rdn in (peercert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return "?"


class ApiServer:
    def __init__(self, calls: Calls, ctx: ssl.SSLContext, limits: Limits = Limits(),
                 maintenance: bool = False):
        self.calls = calls
        self.ctx = ctx
        self.limits = limits
        self.maintenance = maintenance  # no client certificates: only maintenance.CALLS
        self.connections = 0
        self._streams = 0
        self._uploads = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str | None, port: int) -> list[tuple[str, int]]:
        # Plain TCP first: the TLS handshake starts only once the connection holds a slot.
        self._server = await asyncio.start_server(self._on_connection, host, port,
                                                  reuse_address=True)
        return [s.getsockname()[:2] for s in self._server.sockets]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        peer_s = f"{peer[0]}:{peer[1]}" if peer else "?"
        if self.connections >= self.limits.max_connections:
            log.warning("api_connection_refused", peer=peer_s, reason="too many connections")
            writer.transport.abort()
            return
        self.connections += 1
        try:
            await self._serve(reader, writer, peer_s)
        except (ConnectionError, ssl.SSLError, asyncio.TimeoutError) as e:
            log.info("api_connection_dropped", peer=peer_s, reason=_reason(e))
        except Exception:
            log.exception("api_connection_failed", peer=peer_s)
        finally:
            self.connections -= 1
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        tls = TlsConnection(reader, writer, self.ctx, write_timeout=self.limits.write_timeout)
        try:
            await asyncio.wait_for(tls.handshake(), self.limits.handshake_timeout)
        except (ssl.SSLError, ConnectionError, asyncio.TimeoutError, OSError) as e:
            # Policy: a refused certificate is the client's problem; the alert said why, hang up.
            log.info("api_handshake_refused", peer=peer, reason=_reason(e))
            return
        try:
            await self._call(tls, peer)
        finally:
            await tls.close()

    async def _call(self, tls: TlsConnection, peer: str) -> None:
        peercert = tls.peercert()
        who = common_name(peercert)
        try:
            line = await asyncio.wait_for(tls.readline(self.limits.max_request),
                                          self.limits.request_timeout)
        except asyncio.TimeoutError:
            await tls.write(protocol.error(protocol.TIMEOUT, "no request within "
                                           f"{self.limits.request_timeout:g}s"))
            return
        except ValueError:
            await tls.write(protocol.error(
                protocol.TOO_LARGE, f"request larger than {self.limits.max_request} bytes"))
            await discard(tls, self.limits.drain_timeout)  # the rest of that line is on its way
            return
        if not line:
            return
        upload = False
        try:
            method, params = protocol.parse_request(line)
            upload = protocol.METHODS[method].upload
            roles = roles_of(peercert)
            allowed = protocol.roles_allowed(method)
            if self.maintenance:
                if method not in maintenance.CALLS:
                    raise maintenance.refuse(method)
            elif not roles & allowed:
                have = ", ".join(sorted(roles)) or "no os:* role"
                need = " or ".join(r for r in protocol.ROLES if r in allowed)
                raise ApiError(protocol.PERMISSION_DENIED,
                               f"{method} needs role {need}; your certificate ({who}) has {have}")
            log.info("api_call", peer=peer, client=who, method=method)
            if protocol.METHODS[method].upload:
                await self._upload(tls, method, params)
            elif protocol.METHODS[method].stream:
                await self._stream(tls, method, params)
            else:
                result = await asyncio.wait_for(self.calls.unary[method](params),
                                                self.limits.call_timeout)
                try:
                    await tls.write(protocol.encode({"result": result}))
                finally:  # apply-config acts only once its reply is out (or the client gone)
                    self.calls.after_reply(method)
        except ApiError as e:
            if e.code == protocol.PERMISSION_DENIED or self.maintenance:
                log.warning("api_call_refused", peer=peer, client=who, reason=e.message)
            await tls.write(protocol.error(e.code, e.message))
            if upload:  # refused before reading it: the upload is still coming
                await discard(tls, self.limits.drain_timeout)
        except asyncio.TimeoutError:
            await tls.write(protocol.error(protocol.TIMEOUT, "the call took too long"))

    async def _stream(self, tls: TlsConnection, method: str, params: dict[str, Any]) -> None:
        if self._streams >= self.limits.max_streams:
            raise ApiError(protocol.OVERLOADED, f"more than {self.limits.max_streams} open streams "
                                                "on this node; try again later")
        self._streams += 1
        items: AsyncIterator[Any] = self.calls.streams[method](params)
        pump = asyncio.ensure_future(self._pump(tls, items))
        # The client sends nothing after its request: EOF means it left, so stop following.
        gone = asyncio.ensure_future(tls.read(1))
        try:
            done, _ = await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                pump.result()  # raises ApiError from the call
        finally:
            self._streams -= 1
            for task in (pump, gone):
                task.cancel()
            await asyncio.gather(pump, gone, return_exceptions=True)
            await items.aclose()  # type: ignore[attr-defined]

    async def _upload(self, tls: TlsConnection, method: str, params: dict[str, Any]) -> None:
        if self._uploads >= self.limits.max_uploads:
            raise ApiError(protocol.OVERLOADED, f"{self.limits.max_uploads} uploads already "
                                                "running on this node; try again later")
        self._uploads += 1
        body = UploadBody(tls, max_total=self.limits.max_upload,
                          idle_timeout=self.limits.upload_idle_timeout)
        try:
            try:
                result = await asyncio.wait_for(self.calls.uploads[method](params, body),
                                                self.limits.upload_timeout)
            except asyncio.TimeoutError:
                raise ApiError(protocol.TIMEOUT, f"{method} took over "
                                                 f"{self.limits.upload_timeout:g}s") from None
            await body.drain(self.limits.drain_timeout)  # tar padding after the archive's end
            await tls.write(protocol.encode({"result": result}))
        except ApiError as e:
            log.warning("api_upload_failed", method=method, received=body.total, reason=e.message)
            await tls.write(protocol.error(e.code, e.message))
            await discard(tls, self.limits.drain_timeout)
        finally:
            self._uploads -= 1

    async def _pump(self, tls: TlsConnection, items: AsyncIterator[Any]) -> None:
        async for item in items:
            await tls.write(protocol.encode({"item": item}))
        await tls.write(protocol.encode({"end": True}))


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        return e.reason or str(e)
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    return str(e) or type(e).__name__
