"""apid's TLS server: mutual TLS 1.3, one call per connection, roles from the client certificate.

A connection first holds a handshake slot (short deadline, a few per address,
see ``admission``), then, once its certificate is verified, a connection slot
counted per certificate with some kept for admins: silent or half-open
connections from anywhere never keep an operator out.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from talos_init.apid import maintenance, protocol, proxy
from talos_init.apid.admission import Admission, Caps
from talos_init.apid.calls import Calls
from talos_init.apid.protocol import ApiError
from talos_init.apid.tls import TlsConnection
from talos_init.apid.upload import UploadBody, discard
from talos_init.log import get_logger

log = get_logger("apid")


@dataclass(frozen=True)
class Limits:
    max_handshakes: int = 64  # connections not yet authenticated, all addresses together
    handshakes_per_source: int = 8  # of those, from one address
    max_connections: int = 64  # authenticated connections
    connections_per_client: int = 16  # of those, for one non-admin certificate
    admin_reserve: int = 8  # of max_connections, only admins may take these
    # Open follow streams (logs/events/dmesg -f), all clients together; most hold one of
    # PID 1's 32 control connections, so this stays well below that.
    max_follows: int = 16
    follows_per_client: int = 4  # of those, for one certificate
    follow_admin_reserve: int = 4  # of max_follows, only admins may take these
    max_request: int = 64 * 1024  # bytes in the request line
    handshake_timeout: float = 5.0  # a TLS 1.3 handshake is one round trip
    request_timeout: float = 10.0  # from handshake done to a complete request line
    write_timeout: float = 30.0  # a client that stops reading is dropped after this
    call_timeout: float = 60.0  # unary calls
    max_uploads: int = 2  # image imports at once
    max_upload: int = 4 << 30  # bytes in one upload, as sent (compressed or not)
    max_upload_uncompressed: int = 16 << 30  # the archive's tar bytes once decompressed
    max_upload_ratio: int = 50  # tar bytes per byte sent, checked past the first 64 MiB
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
                 forwarder: proxy.Forwarder | None = None, maintenance: bool = False):
        self.calls = calls
        self.forwarder = forwarder  # None: this node forwards nothing (no machine CA key)
        self.ctx = ctx
        self.limits = limits
        self.admission = Admission(Caps(
            max_handshakes=limits.max_handshakes, handshakes_per_source=limits.handshakes_per_source,
            max_connections=limits.max_connections,
            connections_per_client=limits.connections_per_client,
            admin_reserve=limits.admin_reserve, max_follows=limits.max_follows,
            follows_per_client=limits.follows_per_client,
            follow_admin_reserve=limits.follow_admin_reserve))
        self.maintenance = maintenance  # no client certificates: only maintenance.CALLS
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
        source = peer[0] if peer else "?"

        def evict() -> None:
            log.info("api_handshake_evicted", peer=peer_s, reason="handshake slots full")
            writer.transport.abort()

        ticket = self.admission.begin_handshake(source, evict)
        try:
            await self._serve(reader, writer, peer_s, source, ticket)
        except (TimeoutError, ConnectionError, ssl.SSLError) as e:
            log.info("api_connection_dropped", peer=peer_s, reason=_reason(e))
        except Exception:
            log.exception("api_connection_failed", peer=peer_s)
        finally:
            self.admission.end_handshake(source, ticket)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str,
                     source: str, ticket: int) -> None:
        tls = TlsConnection(reader, writer, self.ctx, write_timeout=self.limits.write_timeout)
        try:
            await asyncio.wait_for(tls.handshake(lambda n: self.admission.touch(source, ticket, n)),
                                   self.limits.handshake_timeout)
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError) as e:
            # Policy: a refused certificate is the client's problem; the alert said why, hang up.
            log.info("api_handshake_refused", peer=peer, reason=_reason(e))
            return
        finally:
            self.admission.end_handshake(source, ticket)
        client = hashlib.sha256(tls.peercert_der()).hexdigest()
        admin = protocol.ADMIN in roles_of(tls.peercert())
        try:
            refused = self.admission.admit(client, admin)
            if refused is not None:
                log.warning("api_connection_refused", peer=peer, client=common_name(tls.peercert()),
                            reason=refused)
                await tls.write(protocol.error(protocol.OVERLOADED, f"{refused}; try again later"))
                return
            try:
                await self._call(tls, peer, client, admin)
            finally:
                self.admission.release(client)
        finally:
            await tls.close()

    async def _call(self, tls: TlsConnection, peer: str, client: str, admin: bool) -> None:
        peercert = tls.peercert()
        who = common_name(peercert)
        try:
            line = await asyncio.wait_for(tls.readline(self.limits.max_request),
                                          self.limits.request_timeout)
        except TimeoutError:
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
            route = proxy.route_of(line)
            caller = who
            if route.as_roles is not None:  # forwarded by another node's apid
                roles, who = self._forwarded_roles(route, peercert, who)
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
            if route.node is not None:
                await self._forward(tls, method, params, route.node, roles, caller)
            elif protocol.METHODS[method].upload:
                await self._upload(tls, method, params)
            elif protocol.METHODS[method].stream:
                await self._stream(tls, method, params, client, admin)
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
        except TimeoutError:
            await tls.write(protocol.error(protocol.TIMEOUT, "the call took too long"))

    @staticmethod
    def _forwarded_roles(route: proxy.Route, peercert: dict[str, Any] | None,
                         who: str) -> tuple[set[str], str]:
        """The caller's roles a forwarding node vouches for; only a node's certificate may."""
        if not proxy.is_impersonator(peercert):
            raise ApiError(protocol.PERMISSION_DENIED, f"your certificate ({who}) may not forward "
                           f"roles: only a controlplane's apid ({proxy.IMPERSONATOR}) may")
        if route.node is not None:
            raise ApiError(protocol.BAD_REQUEST, "a forwarded call cannot be forwarded again")
        return set(route.as_roles or ()) & set(protocol.ROLES), f"{route.as_client or '?'} via {who}"

    async def _forward(self, tls: TlsConnection, method: str, params: dict[str, Any], node: str,
                       roles: set[str], caller: str) -> None:
        if self.forwarder is None:
            raise ApiError(protocol.FAILED_PRECONDITION, "this node cannot forward calls to other "
                           "nodes (it has no machine CA key): use a controlplane as endpoint")
        log.info("api_forward", node=node, client=caller, method=method)
        await self.forwarder.forward(tls, node, proxy.forwarded_request(method, params, roles, caller))

    async def _stream(self, tls: TlsConnection, method: str, params: dict[str, Any],
                      client: str, admin: bool) -> None:
        # A stream that ends by itself (read, a tail) holds only its connection slot.
        follow = bool(params.get("follow"))
        if follow:
            refused = self.admission.open_follow(client, admin)
            if refused is not None:
                raise ApiError(protocol.OVERLOADED, f"{refused}; try again later")
        items: AsyncIterator[Any] = self.calls.streams[method](params)
        pump = asyncio.ensure_future(self._pump(tls, items))
        # The client sends nothing after its request: EOF means it left, so stop following.
        gone = asyncio.ensure_future(tls.read(1))
        try:
            done, _ = await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                pump.result()  # raises ApiError from the call
        finally:
            if follow:
                self.admission.close_follow(client)
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
            except TimeoutError:
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
