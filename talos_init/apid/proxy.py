"""Forwarding a call to another node (``osctl -e CP -n WORKER``), and trusting forwarded roles.

A request may name a ``node``. The endpoint's apid checks the caller's roles
for the call as usual, then connects to that node's apid over mutual TLS
with its **own** client certificate and sends the request with the caller's
roles and name added:

    {"v": 1, "method": "services", "params": {}, "as_roles": ["os:reader"], "as_client": "alice"}

and relays the bytes both ways until either side ends (unary, stream and
upload calls alike). The receiving apid uses ``as_roles`` instead of its
peer's certificate roles only when that certificate carries the
``os:impersonator`` Organization (as Talos does), which only a node holding
the machine CA key can sign: controlplane apids make one at start, trustd
never signs an Organization, and ``os:impersonator`` alone allows no call.
The forwarded roles are exactly the caller's, never more; a forwarded
request naming a node again is refused (one hop).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talos_init import pki
from talos_init.apid import protocol
from talos_init.apid.protocol import ApiError
from talos_init.apid.tls import TlsConnection
from talos_init.log import get_logger

log = get_logger("apid")

IMPERSONATOR = "os:impersonator"
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Route:
    node: str | None  # forward to this node ("host" or "host:port")
    as_roles: list[str] | None  # roles a forwarding apid vouches for
    as_client: str | None


def route_of(line: bytes) -> Route:
    """The routing fields of a request line that ``protocol.parse_request`` accepted."""
    obj = json.loads(line)
    node, as_roles, as_client = obj.get("node"), obj.get("as_roles"), obj.get("as_client")
    if node is not None and (not isinstance(node, str) or not node or len(node) > 255):
        raise ApiError(protocol.BAD_REQUEST, "request node must be a host or host:port")
    if as_roles is not None and (not isinstance(as_roles, list)
                                 or not all(isinstance(r, str) for r in as_roles)):
        raise ApiError(protocol.BAD_REQUEST, "request as_roles must be a list of strings")
    return Route(node, as_roles, as_client if isinstance(as_client, str) else None)


def is_impersonator(peercert: dict[str, Any] | None) -> bool:
    return any(name == "organizationName" and value == IMPERSONATOR
               for rdn in (peercert or {}).get("subject", ()) for name, value in rdn)


def forwarded_request(method: str, params: dict[str, Any], roles: set[str], client: str) -> bytes:
    return protocol.encode({"method": method, "params": params,
                            "as_roles": sorted(roles), "as_client": client})


def split_node(node: str) -> tuple[str, int]:
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else protocol.DEFAULT_PORT
    if node.count(":") == 1:
        host, _, port = node.partition(":")
        if not port.isdigit():
            raise ApiError(protocol.BAD_REQUEST, f"node {node!r}: port must be a number")
        return host, int(port)
    return node, protocol.DEFAULT_PORT


class Forwarder:
    """This node's client side toward other nodes' apid (controlplane nodes only)."""

    def __init__(self, ca: Any, ca_key: pki.PrivateKey, ca_pem: bytes, state_dir: Path):
        cert, key = pki.new_client_cert(ca, ca_key, f"apid-{socket.gethostname()}", [IMPERSONATOR])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(cadata=ca_pem.decode())
        with tempfile.TemporaryDirectory(prefix="apid-", dir=state_dir) as tmp:
            crt_path, key_path = Path(tmp) / "proxy.crt", Path(tmp) / "proxy.key"
            key_path.touch(mode=0o600)
            key_path.write_bytes(pki.key_pem(key))
            crt_path.write_bytes(pki.cert_pem(cert))
            ctx.load_cert_chain(str(crt_path), str(key_path))
        self.ctx = ctx

    async def forward(self, tls: TlsConnection, node: str, request: bytes) -> None:
        """Send ``request`` to ``node`` and relay until the node or the client is done."""
        host, port = split_node(node)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self.ctx, server_hostname=host),
                CONNECT_TIMEOUT)
        except ssl.SSLCertVerificationError as e:
            raise ApiError(protocol.UNAVAILABLE, f"node {node}: its certificate is not trusted "
                                                 f"({e.verify_message})") from None
        except (TimeoutError, OSError, ssl.SSLError) as e:
            raise ApiError(protocol.UNAVAILABLE, f"node {node} unreachable from this endpoint: "
                           f"{getattr(e, 'strerror', None) or e or 'timeout'}") from None
        try:
            writer.write(request)
            down = asyncio.ensure_future(_copy_down(reader, tls))
            up = asyncio.ensure_future(_copy_up(tls, writer))
            try:
                # The node's reply ends the call; the client leaving (EOF) ends a follow.
                await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
                if down.done():
                    down.result()
            finally:
                for task in (down, up):
                    task.cancel()
                await asyncio.gather(down, up, return_exceptions=True)
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (TimeoutError, OSError, ssl.SSLError):
                pass  # the node hung up its way; nothing left to relay


async def _copy_down(reader: asyncio.StreamReader, tls: TlsConnection) -> None:
    while True:
        data = await reader.read(65536)
        if not data:
            return
        await tls.write(data)


async def _copy_up(tls: TlsConnection, writer: asyncio.StreamWriter) -> None:
    while True:
        data = await tls.read(65536)
        if not data:
            return
        writer.write(data)
        await writer.drain()
