"""trustd's TLS server: TLS 1.3 without client certificates, one call per connection.

    client:  {"v": 1, "method": "certificate", "params": {"token": "<machine token>",
                                                          "csr": "<PEM CSR>"}}
    server:  {"v": 1, "result": {"crt": "<PEM certificate>", "ca": "<PEM machine CA>"}}
             {"v": 1, "error": {"code": "permission_denied", "message": "..."}}

Order of the checks: connection slots, the rate limit of the peer's address
(every request counts, so guessing the token is slow), the request's size,
the token (constant-time compare), then the CSR against the policy in
``signer``. Every refusal and every signature
is logged with the peer's address.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from talos_init import pki
from talos_init.apid import protocol
from talos_init.apid.protocol import ApiError
from talos_init.apid.tls import TlsConnection
from talos_init.apid.upload import discard
from talos_init.log import get_logger
from talos_init.trustd import signer
from talos_init.trustd.ratelimit import RateLimit

log = get_logger("trustd")

DEFAULT_PORT = 50001
METHOD = "certificate"


@dataclass(frozen=True)
class Limits:
    max_connections: int = 32
    max_request: int = 16 * 1024  # a CSR is under 1 KiB; anything far larger is not one
    handshake_timeout: float = 10.0
    request_timeout: float = 10.0
    burst: int = 5  # requests one address may make at once...
    per_second: float = 0.1  # ...then one every ten seconds
    drain_timeout: float = 2.0


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS 1.3 only; no client certificate (a worker has none yet: the token is its proof)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(cert_file, key_file)
    ctx.num_tickets = 0
    return ctx


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class TrustServer:
    def __init__(self, ctx: ssl.SSLContext, ca_pem: bytes, ca_key: pki.PrivateKey, token: str,
                 lifetime: datetime.timedelta, limits: Limits = Limits(),
                 clock: Callable[[], datetime.datetime] = _utcnow):
        self.ctx = ctx
        self.ca_pem = ca_pem
        self.ca_cert = pki.load_cert(ca_pem, "machine.ca.crt")
        self.ca_key = ca_key
        self.token = token.encode()
        self.lifetime = lifetime
        self.limits = limits
        self.clock = clock
        self.rate = RateLimit(limits.burst, limits.per_second, time.monotonic)
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str | None, port: int) -> list[tuple[str, int]]:
        self._server = await asyncio.start_server(self._on_connection, host, port,
                                                  reuse_address=True)
        return [s.getsockname()[:2] for s in self._server.sockets]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = peer[0] if peer else "?"
        if self.connections >= self.limits.max_connections:
            log.warning("trustd_refused", peer=address, reason="too many connections")
            writer.transport.abort()
            return
        self.connections += 1
        try:
            tls = TlsConnection(reader, writer, self.ctx)
            try:
                await asyncio.wait_for(tls.handshake(), self.limits.handshake_timeout)
            except (TimeoutError, ssl.SSLError, ConnectionError, OSError) as e:
                log.info("trustd_handshake_failed", peer=address, reason=str(e) or type(e).__name__)
                return
            try:
                await tls.write(await self._answer(tls, address))
            finally:
                await tls.close()
        except (TimeoutError, ConnectionError, ssl.SSLError) as e:
            log.info("trustd_connection_dropped", peer=address, reason=str(e) or type(e).__name__)
        except Exception:
            log.exception("trustd_connection_failed", peer=address)
        finally:
            self.connections -= 1
            writer.close()

    async def _answer(self, tls: TlsConnection, address: str) -> bytes:
        # Every request counts, good or not, so neither the token nor our limits can be probed
        # fast. The request is still read (bounded) so the client sees the refusal, not a reset.
        allowed = self.rate.allow(address)
        try:
            line = await asyncio.wait_for(tls.readline(self.limits.max_request),
                                          self.limits.request_timeout)
        except TimeoutError:
            return self._refuse(address, protocol.TIMEOUT,
                                f"no request within {self.limits.request_timeout:g}s")
        except ValueError:
            reply = (self._overloaded(address) if not allowed else self._refuse(
                address, protocol.TOO_LARGE, f"request larger than {self.limits.max_request} bytes"))
            await tls.write(reply)
            await discard(tls, self.limits.drain_timeout)
            return b""
        if not allowed:
            return self._overloaded(address)
        try:
            return protocol.encode({"result": self.handle(line, address)})
        except ApiError as e:
            return self._refuse(address, e.code, e.message)

    def _overloaded(self, address: str) -> bytes:
        return self._refuse(address, protocol.OVERLOADED,
                            f"too many requests from {address}; try again later")

    def _refuse(self, address: str, code: str, message: str) -> bytes:
        log.warning("trustd_refused", peer=address, code=code, reason=message)
        return protocol.error(code, message)

    def handle(self, line: bytes, address: str) -> dict[str, Any]:
        """One request line from ``address`` (within its rate): the signed certificate, or ApiError."""
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(protocol.BAD_REQUEST, f"request is not JSON: {e}") from None
        if not isinstance(obj, dict) or obj.get("v") != protocol.VERSION:
            raise ApiError(protocol.UNSUPPORTED_VERSION, f"expected a v{protocol.VERSION} request")
        if obj.get("method") != METHOD:
            raise ApiError(protocol.UNKNOWN_METHOD, f"trustd has one call, {METHOD!r}")
        params = obj.get("params")
        if not isinstance(params, dict):
            raise ApiError(protocol.BAD_REQUEST, "request params must be a JSON object")
        token = params.get("token")
        if not isinstance(token, str) or not token:
            raise ApiError(protocol.PERMISSION_DENIED, "no machine token in the request")
        if not hmac.compare_digest(token.encode(), self.token):
            raise ApiError(protocol.PERMISSION_DENIED, "wrong machine token (machine.token differs "
                                                       "from this controlplane's)")
        csr = params.get("csr")
        if not isinstance(csr, str) or not csr:
            raise ApiError(protocol.BAD_REQUEST, "parameter 'csr' must be a PEM CSR")
        try:
            signed = signer.sign(csr.encode(), address, self.ca_cert, self.ca_key, self.clock(),
                                 self.lifetime)
        except signer.Refused as e:
            raise ApiError(protocol.PERMISSION_DENIED, str(e)) from None
        cert = signed.cert
        log.info("trustd_signed", peer=address, cn=_cn(cert), sans=",".join(signed.sans),
                 serial=f"{cert.serial_number:x}", not_after=_not_after(cert).isoformat())
        return {"crt": pki.cert_pem(cert).decode(), "ca": self.ca_pem.decode()}


def _cn(cert: x509.Certificate) -> str:
    from cryptography.x509.oid import NameOID

    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else "?"


def _not_after(cert: x509.Certificate) -> datetime.datetime:
    utc = getattr(cert, "not_valid_after_utc", None)
    return utc or cert.not_valid_after.replace(tzinfo=datetime.UTC)
