"""Fetch the machine config from the ``talos.config=`` URL: http, https or file.

Error policy, per attempt: transport errors, timeouts, 5xx, 408 and 429 are retried
with capped exponential backoff and jitter (``Retry-After`` honoured); any other 4xx,
an untrusted TLS certificate, an oversized body, a bad gzip stream or a digest
mismatch stop this fetch at once (``FetchError.transient`` is False). One attempt
has one time limit, the attempt timeout or what is left of ``talos.config.deadline``,
over all of it: connect, TLS handshake, headers and body (see ``_Watchdog``). The caller
(``__main__``) decides what happens after a failed fetch. Runs in the userdata child
process, never in PID 1, so blocking stdlib I/O is fine here.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import random
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from talos_init.log import get_logger

log = get_logger("userdata")

MAX_BYTES = 1 << 20
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_EXTRA_CA = Path("/usr/lib/talos/ca.pem")
USER_AGENT = "talos-init-userdata/0.1"
VARIABLE_RE = re.compile(r"\$\{([^}]*)\}")
GZIP_MAGIC = b"\x1f\x8b"
REDIRECTS = (301, 302, 303, 307, 308)


class _Watchdog:
    """Shuts the connection down when the attempt's time is up, whatever it is blocked in:
    the TLS handshake, a header line trickling in, the body. Socket timeouts alone only
    bound the silence between two reads."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None  # a dup: shutdown acts on the shared connection
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock.dup()
            if self.expired:
                self._sock.shutdown(socket.SHUT_RDWR)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by the other side

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            if self._sock is not None:
                self._sock.close()


class FetchError(Exception):
    """A failed attempt or fetch. ``transient``: worth retrying soon."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class FetchPolicy:
    connect_timeout: float = 10.0  # TCP connect plus TLS handshake
    read_timeout: float = 15.0  # silence between two reads
    attempt_timeout: float = 60.0  # one whole attempt, headers included: a trickle cannot hold us
    max_bytes: int = MAX_BYTES  # both on the wire and after gzip
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 0.25  # each delay is scaled by a random factor in [1-j, 1+j]
    retry_after_max: float = 300.0  # a server cannot park us longer than this per attempt
    deadline: float | None = None  # whole fetch; None: retry transient failures forever
    max_redirects: int = 5


@dataclass(frozen=True)
class Fetched:
    data: bytes  # the config document, decompressed
    url: str  # the expanded URL of the last attempt
    attempts: int


def redact(url: str) -> str:
    """The URL for logs: no userinfo, no query values (either may carry a token)."""
    try:
        p = urlsplit(url)
        netloc = p.hostname or ""
        if p.port:
            netloc += f":{p.port}"
        query = (
            "&".join(part.split("=", 1)[0] + "=…" for part in p.query.split("&")) if p.query else ""
        )
        return urlunsplit((p.scheme, netloc, p.path, query, ""))
    except ValueError:
        return "<unparseable URL>"


def _read_sys(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def first_mac(sysfs: Path) -> str | None:
    """The MAC of the first Ethernet link, preferring links that are up (by ifindex)."""
    links = []
    try:
        entries = list((sysfs / "class/net").iterdir())
    except OSError:
        return None
    for entry in entries:
        if _read_sys(entry / "type") != "1":  # ARPHRD_ETHER only: not lo, tunnels, ...
            continue
        mac = _read_sys(entry / "address")
        if not mac or mac == "00:00:00:00:00:00":
            continue
        up = _read_sys(entry / "operstate") == "up"
        index = int(_read_sys(entry / "ifindex") or 1 << 30)
        links.append((not up, index, mac.lower()))
    return min(links)[2] if links else None


def expand(template: str, sysfs: Path, hostname: str | None) -> str:
    """Fill ``${mac}``, ``${uuid}``, ``${serial}``, ``${hostname}`` (done again on every attempt)."""
    sources: dict[str, Callable[[], str | None]] = {
        "mac": lambda: first_mac(sysfs),
        "uuid": lambda: (_read_sys(sysfs / "class/dmi/id/product_uuid") or "").lower() or None,
        "serial": lambda: _read_sys(sysfs / "class/dmi/id/product_serial"),
        "hostname": lambda: hostname,
    }

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in sources:
            raise FetchError(
                f"unknown URL variable ${{{name}}} (known: ${{mac}}, ${{uuid}}, ${{serial}}, "
                "${hostname})",
                transient=False,
            )
        value = sources[name]()
        if value is None:
            raise FetchError(
                f"URL variable ${{{name}}} has no value on this machine yet", transient=True
            )
        return quote(value, safe=":-._~")

    return VARIABLE_RE.sub(one, template)


def ssl_context(ca_bundle: Path | None, extra_ca: Path | None) -> ssl.SSLContext:
    """Verify against the system bundle plus the image's extra CA, when each exists."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (ca_bundle, extra_ca):
        if path is not None and path.exists():
            ctx.load_verify_locations(cafile=str(path))
    return ctx


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress one gzip stream, refusing output past ``limit`` bytes (gzip bombs)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise FetchError(f"the body is not valid gzip: {e}", transient=False) from None
    if len(out) > limit:
        raise FetchError(
            f"the gzip body decompresses to more than {limit} bytes; refused", transient=False
        )
    if not d.eof:
        raise FetchError("the gzip body is truncated", transient=False)
    return out


def check_digests(data: bytes, sha256: str | None, sha512: str | None) -> None:
    for name, want in (("sha256", sha256), ("sha512", sha512)):
        if want is None:
            continue
        got = hashlib.new(name, data).hexdigest()
        if got != want.lower():
            raise FetchError(
                f"{name} mismatch: talos.config.{name}={want.lower()} but the config has {got}",
                transient=False,
            )


class Fetcher:
    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        sysfs: Path = Path("/sys"),
        hostname: str | None = None,
        ca_bundle: Path | None = SYSTEM_CA_BUNDLE,
        extra_ca: Path | None = IMAGE_EXTRA_CA,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        file_root: Path = Path("/"),
    ) -> None:
        self.policy = policy or FetchPolicy()
        self.sysfs = sysfs
        self.hostname = hostname
        self.ca_bundle = ca_bundle
        self.extra_ca = extra_ca
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.file_root = file_root  # file:// paths are inside the node's root (the initramfs)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        p = self.policy
        delay = min(
            p.backoff_max, p.backoff_initial * 2.0 ** min(attempt - 1, 60)
        )  # no overflow on day 3
        delay = min(p.backoff_max, delay * self.rng.uniform(1 - p.jitter, 1 + p.jitter))
        if retry_after is not None:
            delay = max(delay, min(retry_after, p.retry_after_max))
        return delay

    def fetch(self, template: str, sha256: str | None = None, sha512: str | None = None) -> Fetched:
        """Fetch with retries until success, a permanent error, or the deadline."""
        p = self.policy
        start = self.clock()
        attempt = 0
        while True:
            attempt += 1
            url = template
            remaining = None if p.deadline is None else p.deadline - (self.clock() - start)
            try:
                url = expand(template, self.sysfs, self.hostname)
                log.info("config_fetch_attempt", attempt=attempt, url=redact(url))
                t0 = self.clock()
                data = self.attempt(url, remaining)
                check_digests(data, sha256, sha512)
            except FetchError as e:
                if not e.transient:
                    log.error(
                        "config_fetch_failed",
                        attempt=attempt,
                        url=redact(url),
                        error=str(e),
                        status=e.status,
                        retry=False,
                    )
                    raise
                delay = self.backoff(attempt, e.retry_after)
                elapsed = self.clock() - start
                if p.deadline is not None and elapsed + delay >= p.deadline:
                    log.error(
                        "config_fetch_failed",
                        attempt=attempt,
                        url=redact(url),
                        error=str(e),
                        status=e.status,
                        retry=False,
                        deadline=p.deadline,
                    )
                    raise FetchError(
                        f"gave up after {attempt} attempts in {elapsed:.1f}s "
                        f"(talos.config.deadline={p.deadline:g}s); last error: {e}",
                        transient=False,
                        status=e.status,
                    ) from None
                log.warning(
                    "config_fetch_failed",
                    attempt=attempt,
                    url=redact(url),
                    error=str(e),
                    status=e.status,
                    retry_in=round(delay, 2),
                    retry_after=e.retry_after,
                )
                self.sleep(delay)
                continue
            log.info(
                "config_fetch_ok",
                attempt=attempt,
                url=redact(url),
                bytes=len(data),
                seconds=round(self.clock() - t0, 3),
            )
            return Fetched(data, url, attempt)

    def attempt(self, url: str, remaining: float | None = None) -> bytes:
        """One attempt, following redirects; returns the decompressed body."""
        for _ in range(self.policy.max_redirects + 1):
            scheme = urlsplit(url).scheme
            if scheme == "file":
                return self._file(url)
            if scheme not in ("http", "https"):
                raise FetchError(
                    f"unsupported URL scheme {scheme!r} (http, https or file)", transient=False
                )
            location = self._http(url, remaining)
            if isinstance(location, bytes):
                return location
            new = urljoin(url, location)
            allowed = ("https",) if scheme == "https" else ("http", "https")
            if urlsplit(new).scheme not in allowed:  # no downgrade, and never to file://
                raise FetchError(
                    f"refusing a redirect from {scheme} to {redact(new)}", transient=False
                )
            log.info("config_fetch_redirect", url=redact(url), location=redact(new))
            url = new
        raise FetchError(f"more than {self.policy.max_redirects} redirects", transient=False)

    def _decode(self, body: bytes, encoding: str) -> bytes:
        if encoding in ("gzip", "x-gzip") or body[:2] == GZIP_MAGIC:
            return gunzip(body, self.policy.max_bytes)
        if encoding not in ("", "identity"):
            raise FetchError(f"unsupported Content-Encoding {encoding!r}", transient=False)
        return body

    def _file(self, url: str) -> bytes:
        p = urlsplit(url)
        if p.netloc not in ("", "localhost"):
            raise FetchError(
                f"file:// URLs name a local path, not host {p.netloc!r}", transient=False
            )
        path = self.file_root / unquote(p.path).lstrip("/")
        limit = self.policy.max_bytes
        try:
            with path.open("rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            raise FetchError(f"{path}: no such file", transient=False) from None
        except OSError as e:
            raise FetchError(f"{path}: {e.strerror or e}", transient=False) from None
        if len(data) > limit:
            raise FetchError(f"{path} is larger than {limit} bytes; refused", transient=False)
        return self._decode(data, "")

    def _trusted(self) -> str:
        paths = [str(p) for p in (self.ca_bundle, self.extra_ca) if p is not None and p.exists()]
        return ", ".join(paths) or "none (no CA bundle found)"

    def _http(self, url: str, remaining: float | None) -> bytes | str:
        """One request: the body, or the Location of a redirect."""
        p = self.policy
        parts = urlsplit(url)
        try:
            host, port = parts.hostname, parts.port
        except ValueError as e:
            raise FetchError(f"bad URL: {e}", transient=False) from None
        if not host:
            raise FetchError("the URL has no host", transient=False)
        # One limit for the whole attempt: the attempt timeout, or what is left of the deadline.
        limit = p.attempt_timeout if remaining is None else max(0.1, min(p.attempt_timeout, remaining))

        def cap(t: float) -> float:
            return max(0.1, min(t, limit))

        ctx = ssl_context(self.ca_bundle, self.extra_ca) if parts.scheme == "https" else None
        if ctx is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=cap(p.connect_timeout), context=ctx
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=cap(p.connect_timeout))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        started = self.clock()
        stage = "connecting to"
        watchdog = _Watchdog(limit)
        try:
            sock = socket.create_connection((host, conn.port), cap(p.connect_timeout))
            watchdog.watch(sock)
            if ctx is not None:
                stage = "TLS handshake with"
                sock = ctx.wrap_socket(sock, server_hostname=host)
            conn.sock = sock  # http.client uses a socket it is given as is
            sock.settimeout(cap(p.read_timeout))
            stage = "waiting for"
            conn.request(
                "GET",
                target,
                headers={"Accept-Encoding": "gzip", "User-Agent": USER_AGENT, "Accept": "*/*"},
            )
            resp = conn.getresponse()
            if watchdog.expired:  # headers cut short by the watchdog
                raise TimeoutError
            status = resp.status
            if status in REDIRECTS:
                location = resp.getheader("Location")
                if not location:
                    raise FetchError(
                        f"HTTP {status} redirect without a Location", transient=True, status=status
                    )
                return location
            retry_after = parse_retry_after(resp.getheader("Retry-After"))
            if status >= 500 or status in (408, 429):
                raise FetchError(
                    f"HTTP {status} {resp.reason}",
                    transient=True,
                    status=status,
                    retry_after=retry_after,
                )
            if status >= 400:
                raise FetchError(
                    f"HTTP {status} {resp.reason} from {redact(url)}",
                    transient=False,
                    status=status,
                )
            if status != 200:
                raise FetchError(
                    f"unexpected HTTP {status} {resp.reason}", transient=False, status=status
                )
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > p.max_bytes:
                raise FetchError(
                    f"the server announces {int(length)} bytes; the limit is {p.max_bytes}; refused",
                    transient=False,
                    status=status,
                )
            stage = "reading the body from"
            chunks, size = [], 0
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > p.max_bytes:
                    raise FetchError(
                        f"the body is larger than {p.max_bytes} bytes; refused",
                        transient=False,
                        status=status,
                    )
                chunks.append(chunk)
                if self.clock() - started > limit:
                    raise FetchError(f"the download took longer than {limit:g}s", transient=True)
            if watchdog.expired:  # cut short: what was read may look complete but is not
                raise TimeoutError
            return self._decode(
                b"".join(chunks), (resp.getheader("Content-Encoding") or "").lower()
            )
        except (http.client.HTTPException, OSError) as e:
            raise self._failed(e, host, port or parts.scheme, stage, watchdog) from None
        finally:
            watchdog.stop()
            conn.close()

    def _failed(
        self, e: BaseException, host: str, port: int | str, stage: str, watchdog: _Watchdog
    ) -> FetchError:
        """The FetchError for a transport failure of one attempt."""
        if watchdog.expired:  # the watchdog's shutdown is what broke it
            return FetchError(
                f"the attempt took longer than {watchdog.seconds:g}s ({stage} {host}:{port})",
                transient=True,
            )
        if isinstance(e, ssl.SSLCertVerificationError):
            return FetchError(
                f"TLS: the certificate of {host} is not trusted ({e.verify_message}); "
                f"CAs trusted: {self._trusted()}",
                transient=False,
            )
        if isinstance(e, TimeoutError):
            return FetchError(f"timed out {stage} {host}:{port}", transient=True)
        if isinstance(e, ssl.SSLError):
            return FetchError(f"TLS error with {host}: {e.reason or e}", transient=True)
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        return FetchError(f"{stage} {host}: {detail}", transient=True)
