"""Real HTTP and HTTPS servers on 127.0.0.1, scripted per test, for the userdata fetcher."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Action = Callable[["Handler"], None]


def reply(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> Action:
    def act(h: Handler) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return act


def gzipped(body: bytes, *, header: bool = True) -> Action:
    return reply(200, gzip.compress(body), {"Content-Encoding": "gzip"} if header else {})


def stall(after: bytes, announced: int) -> Action:
    """Send headers and part of the body, then go silent until the test ends."""

    def act(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(announced))
        h.end_headers()
        h.wfile.write(after)
        h.wfile.flush()
        h.server.release.wait(30)  # type: ignore[attr-defined]

    return act


def endless(chunk: bytes = b"#" * 65536) -> Action:
    """Stream without Content-Length until the client hangs up."""

    def act(h: Handler) -> None:
        h.send_response(200)
        h.end_headers()
        try:
            while not h.server.release.is_set():  # type: ignore[attr-defined]
                h.wfile.write(chunk)
        except OSError:
            pass

    return act


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server: ScriptedServer = self.server  # type: ignore[assignment]
        with server.lock:
            server.requests.append((self.path, dict(self.headers)))
            action = server.script.pop(0) if len(server.script) > 1 else server.script[0]
        self.close_connection = True
        action(self)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output clean; requests are recorded instead


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.script: list[Action] = [reply(404)]
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        self.trickled: list[int] = []  # bytes trickle_headers sent before the client left
        self.trickle_done = threading.Event()
        self.tls = tls
        if tls is not None:
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def finish_request(self, request, client_address):  # type: ignore[no-untyped-def]
        try:
            if self.tls is not None:
                request.do_handshake()
            super().finish_request(request, client_address)
        except (ssl.SSLError, OSError):
            pass  # a client refusing our certificate is what some tests want

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        pass

    def play(self, *actions: Action) -> None:
        """Answer requests with these actions in order; the last one repeats."""
        with self.lock:
            self.script = list(actions)

    def url(self, path: str = "/config.yaml") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}{path}"


@dataclass
class PrivateCA:
    ca_pem: bytes
    server_ctx: ssl.SSLContext
    files: list[Path] = field(default_factory=list)


def make_private_ca(tmp: Path) -> PrivateCA:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "talos-init test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    chain = tmp / "server.pem"
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain)
    return PrivateCA(ca_pem, ctx)


def _serve(tls: ssl.SSLContext | None):
    server = ScriptedServer(tls)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def http_server():
    """A scripted HTTP server on 127.0.0.1 (404 until the test plays something)."""
    yield from _serve(None)


@pytest.fixture
def private_ca(tmp_path):
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    return make_private_ca(tmp_path)


@pytest.fixture
def https_server(private_ca):
    """A scripted HTTPS server on 127.0.0.1 whose certificate only the private CA trusts."""
    yield from _serve(private_ca.server_ctx)


def trickle_headers(total: int = 400, every: float = 0.05) -> Action:
    """A status line, then one header line a byte at a time (each well within the read
    timeout), ``total`` bytes or until the client hangs up; what was sent is recorded."""

    def act(h: Handler) -> None:
        sent = 0
        try:
            h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            h.wfile.flush()
            while sent < total and not h.server.release.wait(every):  # type: ignore[attr-defined]
                h.wfile.write(b"x")
                h.wfile.flush()
                sent += 1
        except OSError:
            pass
        with h.server.lock:  # type: ignore[attr-defined]
            h.server.trickled.append(sent)  # type: ignore[attr-defined]
        h.server.trickle_done.set()  # type: ignore[attr-defined]

    return act
