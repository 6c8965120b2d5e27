"""A worker's side of trustd: ask a controlplane to sign this node's serving certificate.

The CSR is made once the connection is up, because trustd signs only the
address the request comes from (plus loopback and host names): the local
address of that very connection is the one to ask for.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from talos_init import pki
from talos_init.apid import protocol

TRUSTD_PORT = 50001


def client_context(ca_pem: str) -> ssl.SSLContext:
    """TLS 1.3, trustd's certificate checked against the machine CA and the host asked for."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cadata=ca_pem)
    return ctx


async def call(host: str, port: int, ctx: ssl.SSLContext,
               params: Callable[[str], dict[str, Any]] | dict[str, Any], *,
               timeout: float = 10.0, raw: bytes | None = None) -> dict[str, Any]:
    """One trustd call; ``params`` may be a function of our local address. ApiError on refusal."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), timeout)
    try:
        local = writer.get_extra_info("sockname")[0]
        body = params(local) if callable(params) else params
        writer.write(raw if raw is not None else protocol.encode({"method": "certificate",
                                                                  "params": body}))
        await asyncio.wait_for(writer.drain(), timeout)
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise ConnectionError(f"trustd at {host}:{port} closed the connection without an answer")
        return protocol.parse_reply(line)["result"]
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


async def request_certificate(host: str, port: int, ctx: ssl.SSLContext, token: str,
                              key: pki.PrivateKey, cn: str, names: Callable[[str], list[str]],
                              *, timeout: float = 10.0) -> bytes:
    """The signed certificate (PEM) for ``key``; ``names(local_address)`` are the SANs wanted."""
    def params(local: str) -> dict[str, Any]:
        csr = pki.server_csr(key, cn, names(local))
        from cryptography.hazmat.primitives import serialization

        return {"token": token, "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}

    result = await call(host, port, ctx, params, timeout=timeout)
    crt = result.get("crt") if isinstance(result, dict) else None
    if not isinstance(crt, str):
        raise protocol.ApiError(protocol.INTERNAL, "trustd's reply has no certificate")
    return crt.encode()
