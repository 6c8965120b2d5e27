"""A worker's serving certificate: signed by trustd on a controlplane, renewed at half-life.

Used when the config has ``machine.ca.crt`` but no ``machine.ca.key``. At
start apid asks each trustd in turn (the host of
``cluster.controlPlane.endpoint``, then any ``--trustd`` given) until one
signs, backing off while none does; apid serves only after that. At half of
the certificate's life a new key is signed and loaded into the same
SSLContext: new handshakes get the new certificate, open connections keep
theirs (an SSLContext's certificate is copied into each connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from talos_init import pki
from talos_init.apid import trustd_client
from talos_init.apid.protocol import ApiError
from talos_init.log import get_logger

log = get_logger("apid")

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0


def trustd_targets(config: dict[str, Any], extra: list[str]) -> list[tuple[str, int]]:
    """Where trustd may answer: the controlplane endpoint's host, then ``extra`` (HOST[:PORT])."""
    found: list[tuple[str, int]] = []
    endpoint = ((config.get("cluster") or {}).get("controlPlane") or {}).get("endpoint")
    if isinstance(endpoint, str) and endpoint:
        host = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}").hostname
        if host:
            found.append((host, trustd_client.TRUSTD_PORT))
    for item in extra:
        host, sep, port = item.rpartition(":")
        if not sep or "]" in port or (host.count(":") > 0 and not host.startswith("[")):
            host, port = item, str(trustd_client.TRUSTD_PORT)  # a bare name or IPv6 address
        found.append((host.strip("[]"), int(port)))
    return list(dict.fromkeys(found))


def csr_names(config: dict[str, Any], local: str) -> list[str]:
    """What this node asks trustd for: the address it connects from, loopback, host names."""
    machine = config.get("machine") or {}
    names = [local.split("%")[0], "127.0.0.1", "::1", "localhost", socket.gethostname()]
    hostname = (machine.get("network") or {}).get("hostname")
    if isinstance(hostname, str):
        names.append(hostname)
    for san in machine.get("certSANs") or []:
        if isinstance(san, str) and not pki._is_ip(san):  # trustd signs no address it cannot check
            names.append(san)
    return names


def _validity(crt_pem: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    cert = x509.load_pem_x509_certificate(crt_pem)
    nb = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before.replace(
        tzinfo=datetime.UTC)
    na = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(
        tzinfo=datetime.UTC)
    return nb, na


class WorkerCert:
    def __init__(self, config: dict[str, Any], ca_pem: bytes, state_dir: Path,
                 targets: list[tuple[str, int]], *, timeout: float = 10.0,
                 console: Path | None = None,
                 clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(
                     datetime.UTC)):
        token = (config.get("machine") or {}).get("token")
        if not isinstance(token, str) or not token:
            raise pki.PkiError("machine.token is missing: without machine.ca.key this node needs "
                               "it to ask trustd for its serving certificate")
        if not targets:
            raise pki.PkiError("no machine.ca.key and no cluster.controlPlane.endpoint: this node "
                               "has no trustd to ask for its serving certificate")
        self.config = config
        self.ca_pem = ca_pem
        self.token = token
        self.state_dir = state_dir
        self.targets = targets
        self.timeout = timeout
        self.console = console  # /dev/kmsg: why we do not serve yet, for whoever reads the console
        self.clock = clock
        self.client_ctx = trustd_client.client_context(ca_pem.decode())
        self.not_before: datetime.datetime | None = None
        self.not_after: datetime.datetime | None = None

    async def _once(self) -> tuple[bytes, pki.PrivateKey, str,
                                   tuple[datetime.datetime, datetime.datetime]]:
        """Signed PEM, its key and who signed, or raise with every trustd's reason."""
        reasons = []
        cn = socket.gethostname() or "talos-node"
        for host, port in self.targets:
            key = pki.new_key()
            try:
                crt = await trustd_client.request_certificate(
                    host, port, self.client_ctx, self.token, key, cn,
                    lambda local: csr_names(self.config, local), timeout=self.timeout)
                return crt, key, f"{host}:{port}", _validity(crt)
            except ApiError as e:
                reasons.append(f"trustd {host}:{port} refused: {e.message}")
            except ssl.SSLCertVerificationError as e:
                reasons.append(f"trustd {host}:{port}: certificate not trusted ({e.verify_message})")
            except (TimeoutError, OSError, ssl.SSLError) as e:
                reasons.append(f"trustd {host}:{port} unreachable: "
                               f"{getattr(e, 'strerror', None) or e or type(e).__name__}")
            except ValueError as e:  # a reply or certificate we cannot read: try the next
                reasons.append(f"trustd {host}:{port}: unreadable answer ({e})")
        raise _NotSigned("; ".join(reasons))

    async def _signed(self, event: str) -> tuple[bytes, pki.PrivateKey]:
        """Ask until some trustd signs (policy: retry forever with backoff, saying why)."""
        delay = BACKOFF_INITIAL
        attempt = 0
        while True:
            attempt += 1
            try:
                crt, key, by, validity = await self._once()
            except _NotSigned as e:
                wait = delay * random.uniform(0.8, 1.2)
                log.warning(f"{event}_pending", attempt=attempt, retry_in=f"{wait:.1f}s",
                            reason=str(e))
                self._say(f"apid: no API certificate from trustd yet (attempt {attempt}, next in "
                          f"{wait:.0f}s): {e}")
                await asyncio.sleep(wait)
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            self.not_before, self.not_after = validity
            log.info(event, trustd=by, not_after=self.not_after.isoformat())
            return crt, key

    def _say(self, line: str) -> None:
        if self.console is None:
            return
        try:
            with self.console.open("a") as f:
                f.write(f"<4>{line[:900]}\n")
        except OSError:
            pass  # best effort: the service log has it already

    @contextlib.contextmanager
    def _files(self, crt: bytes, key: pki.PrivateKey) -> Iterator[tuple[str, str]]:
        """Certificate and key as files (0600, in a 0700 directory) until the context read them."""
        with tempfile.TemporaryDirectory(prefix="apid-", dir=self.state_dir) as tmp:
            key_path, crt_path = Path(tmp) / "serving.key", Path(tmp) / "serving.crt"
            key_path.touch(mode=0o600)
            key_path.write_bytes(pki.key_pem(key))
            crt_path.write_bytes(crt)
            yield str(crt_path), str(key_path)

    async def context(self, make: Callable[[str, str], ssl.SSLContext]) -> ssl.SSLContext:
        """The server context once trustd signed; ``make(crt_file, key_file)`` builds it."""
        crt, key = await self._signed("apid_certificate_signed")
        with self._files(crt, key) as (crt_file, key_file):
            return make(crt_file, key_file)

    def renew_in(self) -> float:
        """Seconds until half of the current certificate's life (at least one)."""
        assert self.not_before is not None and self.not_after is not None
        half = self.not_before + (self.not_after - self.not_before) / 2
        return max(1.0, (half - self.clock()).total_seconds())

    async def renew_forever(self, ctx: ssl.SSLContext) -> None:
        while True:
            await asyncio.sleep(self.renew_in())
            crt, key = await self._signed("apid_certificate_renewed")
            with self._files(crt, key) as (crt_file, key_file):
                ctx.load_cert_chain(crt_file, key_file)  # new handshakes only


class _NotSigned(Exception):
    pass
