"""osctl's side of the API: the client config with contexts, mutual TLS, errors in words.

The client config is shaped like Talos' talosconfig:

    context: demo
    contexts:
      demo:
        endpoints: [192.168.1.10]
        nodes: [192.168.1.10]
        ca: <base64 PEM of the machine CA certificate>
        crt: <base64 PEM of the client certificate>
        key: <base64 PEM of its key>
"""

from __future__ import annotations

import contextlib
import datetime
import os
import select
import socket
import ssl
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from talos_init.apid import protocol
from talos_init.apid.protocol import ApiError


class OsctlError(Exception):
    """An error for the user: its message is the whole explanation."""

    code: str | None = None  # the node's error code, when the node refused
    detail: str = ""  # the node's own message


@dataclass
class Context:
    name: str
    endpoints: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    ca: str = ""
    crt: str = ""
    key: str = ""


def config_path(flag: str | None) -> Path:
    if flag:
        return Path(flag)
    if os.environ.get("OSCTLCONFIG"):
        return Path(os.environ["OSCTLCONFIG"])
    return Path.home() / ".osctl" / "config"


def load_context(path: Path, name: str | None) -> Context:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise OsctlError(f"no osctl config at {path} (make one with `osctl gen config`, or pass "
                         "--osctlconfig)") from None
    except yaml.YAMLError as e:
        raise OsctlError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts"), dict):
        raise OsctlError(f"{path}: expected a mapping with 'contexts'")
    name = name or doc.get("context")
    if not name:
        raise OsctlError(f"{path}: no current context; pass --context")
    ctx = doc["contexts"].get(name)
    if not isinstance(ctx, dict):
        known = ", ".join(sorted(doc["contexts"])) or "none"
        raise OsctlError(f"{path}: no context {name!r} (known: {known})")

    def strings(key: str) -> list[str]:
        value = ctx.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise OsctlError(f"{path}: contexts.{name}.{key} must be a list of strings")
        return value

    return Context(name, strings("endpoints"), strings("nodes"), str(ctx.get("ca") or ""),
                   str(ctx.get("crt") or ""), str(ctx.get("key") or ""))


def split_hostport(target: str) -> tuple[str, int]:
    """"host", "host:port", "[v6]" or "[v6]:port"; a bare IPv6 address has no port."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else protocol.DEFAULT_PORT
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        try:
            return host, int(port)
        except ValueError:
            raise OsctlError(f"{target!r}: port must be a number") from None
    return target, protocol.DEFAULT_PORT


def _pem(value: str) -> bytes:
    from talos_init.pki import decode_field  # cryptography only when a config is used

    return decode_field(value, "osctl config")


def _cert_not_after(pem: bytes) -> datetime.datetime | None:
    try:
        from cryptography import x509
    except ImportError:
        return None
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None
    utc = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42; older ones are naive UTC
    return utc or cert.not_valid_after.replace(tzinfo=datetime.UTC)


class Client:
    """Opens one mutual-TLS connection per call, as the protocol wants."""

    def __init__(self, ctx: Context, *, timeout: float = 10.0, insecure: bool = False,
                 fingerprints: Iterable[str] = (), say: Any = None):
        self.ctx = ctx
        self.timeout = timeout
        # --insecure (maintenance mode): no CA to check the node against and no client
        # certificate; the node's key may be pinned by its SPKI fingerprint instead.
        self.insecure = insecure
        self.fingerprints = {normalize_fingerprint(f) for f in fingerprints}
        self.say = say  # where "the node's fingerprint is ..." goes (osctl: stderr)
        self._told: set[str] = set()
        self._tmp = tempfile.TemporaryDirectory(prefix="osctl-")
        self.client_not_after: datetime.datetime | None = None
        self.ssl = self._insecure_context() if insecure else self._context()

    def close(self) -> None:
        self._tmp.cleanup()

    @staticmethod
    def _insecure_context() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _pin(self, target: str, sock: ssl.SSLSocket) -> None:
        """--insecure: compare the node's key with --cert-fingerprint, or show it."""
        der = sock.getpeercert(binary_form=True)
        if der is None:
            raise OsctlError(f"node {target} presented no certificate")
        from talos_init.apid.maintenance import spki_fingerprint

        seen = spki_fingerprint(der)
        if self.fingerprints:
            if normalize_fingerprint(seen) not in self.fingerprints:
                raise OsctlError(f"node {target}: certificate fingerprint {seen} does not match "
                                 "--cert-fingerprint; refusing to talk to it (another machine, "
                                 "or someone in between)")
        elif target not in self._told and self.say is not None:
            self._told.add(target)
            self.say(f"node {target}: certificate fingerprint (SHA-256 SPKI) {seen}, not checked; "
                     f"pin it with --cert-fingerprint {seen}")

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if not self.ctx.ca:
            raise OsctlError(f"context {self.ctx.name!r} has no 'ca': cannot tell a real node from "
                             "an impostor")
        try:
            ctx.load_verify_locations(cadata=_pem(self.ctx.ca).decode())
        except (ValueError, ssl.SSLError) as e:
            raise OsctlError(f"context {self.ctx.name!r}: 'ca' is not a certificate: {e}") from None
        if self.ctx.crt and self.ctx.key:
            crt, key = _pem(self.ctx.crt), _pem(self.ctx.key)
            self.client_not_after = _cert_not_after(crt)
            crt_path = Path(self._tmp.name) / "client.crt"
            key_path = Path(self._tmp.name) / "client.key"
            crt_path.write_bytes(crt)
            key_path.touch(mode=0o600)
            key_path.write_bytes(key.replace(b"ED25519 PRIVATE KEY-----", b"PRIVATE KEY-----"))
            try:
                ctx.load_cert_chain(str(crt_path), str(key_path))
            except ssl.SSLError as e:
                raise OsctlError(f"context {self.ctx.name!r}: client crt/key unusable: {e}") from None
            finally:
                key_path.unlink()
        return ctx

    def _connect(self, target: str) -> ssl.SSLSocket:
        host, port = split_hostport(target)
        try:
            raw = socket.create_connection((host, port), timeout=self.timeout)
        except TimeoutError:
            raise OsctlError(f"node {target} unreachable: no answer within {self.timeout:g}s") from None
        except OSError as e:
            raise OsctlError(f"node {target} unreachable: {e.strerror or e}") from None
        # The request follows the client's last handshake flight at once: without this,
        # Nagle holds it until the node's delayed ACK (about 40 ms a call).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock = self.ssl.wrap_socket(raw, server_hostname=host)
            if self.insecure:
                try:
                    self._pin(target, sock)
                except OsctlError:
                    sock.close()
                    raise
            return sock
        except ssl.SSLCertVerificationError as e:
            raw.close()
            raise OsctlError(self._untrusted(target, e)) from None
        except (ssl.SSLError, OSError) as e:
            raw.close()
            raise OsctlError(self._refused(target, e)) from None

    @staticmethod
    def _untrusted(target: str, e: ssl.SSLCertVerificationError) -> str:
        if e.verify_code == 10:
            why = "its certificate has expired"
        elif e.verify_code == 62:
            why = f"its certificate is not valid for {target} ({e.verify_message})"
        else:
            why = f"its certificate is not signed by the CA in your osctl config ({e.verify_message})"
        return f"untrusted server {target}: {why}"

    def _refused(self, target: str, e: BaseException) -> str:
        reason = getattr(e, "reason", None) or ""
        if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
            return (f"node {target} requires a client certificate, and context "
                    f"{self.ctx.name!r} has none (crt/key)")
        if reason == "SSLV3_ALERT_CERTIFICATE_EXPIRED":
            when = f" on {self.client_not_after:%Y-%m-%d %H:%M} UTC" if self.client_not_after else ""
            return f"node {target} refused your client certificate: it expired{when}"
        if reason in ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE",
                      "TLSV1_ALERT_DECRYPT_ERROR"):
            return (f"node {target} does not trust your client certificate: it is not signed "
                    "by the node's machine CA")
        if reason == "TLSV1_ALERT_PROTOCOL_VERSION" or reason == "UNSUPPORTED_PROTOCOL":
            return f"node {target} does not speak TLS 1.3"
        if isinstance(e, (ConnectionResetError, BrokenPipeError)) or "EOF" in str(e):
            return f"node {target} closed the connection during the TLS handshake ({e})"
        return f"TLS with node {target} failed: {reason or e}"

    @contextlib.contextmanager
    def _session(self, target: str, node: str | None = None) -> Iterator[ssl.SSLSocket]:
        """A connection to ``target`` whose failures become OsctlErrors naming the node."""
        sock = self._connect(target)
        try:
            yield sock
        except ssl.SSLCertVerificationError as e:
            raise OsctlError(self._untrusted(target, e)) from None
        except (ssl.SSLError, ConnectionError) as e:
            # TLS 1.3: the server checks our certificate after the client's handshake ends.
            raise OsctlError(self._refused(target, e)) from None
        except TimeoutError:
            raise OsctlError(f"node {target} did not answer within the timeout") from None
        except ApiError as e:
            raise refused(f"{node} (via {target})" if node else target, e) from None
        finally:
            sock.close()

    def _lines(self, target: str, method: str, params: dict[str, Any],
               node: str | None = None) -> Iterator[dict[str, Any]]:
        with self._session(target, node) as sock:
            sock.sendall(protocol.request(method, params, node))
            # Following waits as long as the user does; anything else has the call timeout
            # (apid's own limit is 60 s) plus a margin.
            sock.settimeout(None if params.get("follow") else max(self.timeout, 70.0))
            f = sock.makefile("rb")
            while True:
                line = f.readline(8 * 1024 * 1024)
                if not line:
                    raise OsctlError(f"node {target} closed the connection without an answer")
                yield protocol.parse_reply(line)

    def upload(self, target: str, method: str, params: dict[str, Any],
               chunks: Iterable[bytes], *, reply_timeout: float = 3600.0,
               node: str | None = None) -> Any:
        """Send the request, then ``chunks`` in frames; the node's one reply.

        The node may refuse mid-way (bad archive, size limit): we look for its reply
        between frames and stop sending as soon as it has spoken.
        """
        with self._session(target, node) as sock:
            sock.sendall(protocol.request(method, params, node))
            sock.settimeout(max(self.timeout, 120.0))
            try:
                for chunk in chunks:
                    for i in range(0, len(chunk), protocol.MAX_FRAME):
                        if sock.pending() or select.select([sock], [], [], 0)[0]:
                            raise _Replied
                        sock.sendall(protocol.frame(chunk[i:i + protocol.MAX_FRAME]))
                sock.sendall(protocol.frame(b""))
            except (_Replied, BrokenPipeError, ConnectionResetError):
                pass  # the reply (read below) says why the node stopped listening
            sock.settimeout(reply_timeout)
            line = sock.makefile("rb").readline(8 * 1024 * 1024)
            if not line:
                raise OsctlError(f"node {target} closed the connection during the upload")
            return protocol.parse_reply(line).get("result")

    def call(self, target: str, method: str, params: dict[str, Any] | None = None,
             node: str | None = None) -> Any:
        """One call on ``target``, or through it on ``node`` (the endpoint forwards it)."""
        for msg in self._lines(target, method, params or {}, node):
            if "result" in msg:
                return msg["result"]
        raise AssertionError("unreachable")

    def stream(self, target: str, method: str, params: dict[str, Any] | None = None,
               node: str | None = None) -> Iterator[Any]:
        for msg in self._lines(target, method, params or {}, node):
            if msg.get("end"):
                return
            if "item" in msg:
                yield msg["item"]


def normalize_fingerprint(fp: str) -> str:
    """base64 as the node prints it; hex (with or without colons) is accepted too."""
    import base64
    import binascii

    text = fp.strip()
    hexed = text.replace(":", "").lower()
    if len(hexed) == 64 and all(c in "0123456789abcdef" for c in hexed):
        return base64.b64encode(bytes.fromhex(hexed)).decode()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise OsctlError(f"--cert-fingerprint {fp!r}: expected the SHA-256 fingerprint the node "
                         "prints (base64, or 64 hex digits)")
    return base64.b64encode(raw).decode()


class _Replied(Exception):
    """The node answered before the upload ended."""


def refused(target: str, e: ApiError) -> OsctlError:
    """The node's refusal in words, keeping its code for callers that act on it (edit).
    Built here, not in the except block: a local there would hold its own traceback."""
    err = OsctlError(describe(target, e))
    err.code, err.detail = e.code, e.message
    return err


def describe(target: str, e: ApiError) -> str:
    if e.code == protocol.PERMISSION_DENIED:
        return f"role lacks permission on node {target}: {e.message}"
    if e.code == protocol.NOT_FOUND:
        return f"node {target}: not found: {e.message}"
    if e.code == protocol.UNAVAILABLE:
        return f"node {target}: unavailable: {e.message}"
    if e.code == protocol.UNIMPLEMENTED:
        return f"node {target}: not implemented: {e.message}"
    if e.code == protocol.TOO_LARGE:
        return f"node {target}: request too large: {e.message}"
    return f"node {target}: {e.code.replace('_', ' ')}: {e.message}"
