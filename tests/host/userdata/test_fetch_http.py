"""The fetcher against real HTTP(S) servers on 127.0.0.1: retries, limits, TLS, gzip, digests."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

import pytest

from talos_init.userdata.fetch import Fetcher, FetchError, FetchPolicy
from tests.host.userdata.conftest import endless, gzipped, reply, stall, trickle_headers

BODY = b"version: v1alpha1\n# a config\n"


class Sleeps(list):
    """Records the delays asked for, without waiting, so tests stay fast."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fetcher(tmp_path, sleeps=None, **policy) -> Fetcher:
    kw = {
        "connect_timeout": 5,
        "read_timeout": 0.5,
        "attempt_timeout": 5,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "deadline": 30,
    }
    kw.update(policy)
    return Fetcher(
        FetchPolicy(**kw),
        sysfs=tmp_path,
        ca_bundle=None,
        extra_ca=None,
        sleep=sleeps if sleeps is not None else Sleeps(),
        rng=random.Random(0),
    )


def test_404_stops_at_once_with_the_status(http_server, tmp_path):
    """A 4xx is not retried and the error shows the status."""
    http_server.play(reply(404, b"nope"))
    with pytest.raises(FetchError, match="HTTP 404 Not Found") as e:
        fetcher(tmp_path).fetch(http_server.url())
    assert e.value.status == 404 and not e.value.transient
    assert len(http_server.requests) == 1


def test_500_then_200_succeeds(http_server, tmp_path):
    """A 5xx is retried with backoff until the server answers."""
    sleeps = Sleeps()
    http_server.play(reply(500), reply(503), reply(200, BODY))
    got = fetcher(tmp_path, sleeps).fetch(http_server.url())
    assert got.data == BODY and got.attempts == 3 and len(sleeps) == 2


def test_stall_mid_body_times_out_and_is_retried(http_server, tmp_path):
    """A server that goes silent halfway through the body hits the read timeout; the retry succeeds."""
    http_server.play(stall(BODY[:5], len(BODY)), reply(200, BODY))
    got = fetcher(tmp_path, read_timeout=0.3).fetch(http_server.url())
    assert got.data == BODY and got.attempts == 2


def test_headers_trickled_within_the_read_timeout_still_end_the_attempt(http_server, tmp_path):
    """One header byte every 50 ms never trips the read timeout; the attempt timeout ends it."""
    http_server.play(trickle_headers(total=400), reply(200, BODY))
    got = fetcher(tmp_path, read_timeout=0.5, attempt_timeout=1).fetch(http_server.url())
    assert got.data == BODY and got.attempts == 2
    assert http_server.trickle_done.wait(30)  # the server saw the client leave...
    assert http_server.trickled[0] < 400, http_server.trickled  # ...before its header ended


def test_deadline_holds_while_headers_trickle(http_server, tmp_path):
    """talos.config.deadline ends the fetch even inside an attempt that is still reading headers."""
    http_server.play(trickle_headers(total=400))
    with pytest.raises(FetchError, match=r"gave up after 1 attempts.*deadline=1\.5s.*took longer"):
        fetcher(tmp_path, read_timeout=0.5, attempt_timeout=60, deadline=1.5).fetch(
            http_server.url())
    assert http_server.trickle_done.wait(30)
    assert http_server.trickled[0] < 400, http_server.trickled


def test_oversized_body_is_refused_without_reading_it_all(http_server, tmp_path):
    """A body past the cap is refused, announced or streamed, and not retried."""
    http_server.play(reply(200, b"#" * 2000))
    with pytest.raises(FetchError, match="announces 2000 bytes; the limit is 1000"):
        fetcher(tmp_path, max_bytes=1000).fetch(http_server.url())
    http_server.play(endless())
    with pytest.raises(FetchError, match="larger than 1000000 bytes"):
        fetcher(tmp_path, max_bytes=1_000_000).fetch(http_server.url())
    assert len(http_server.requests) == 2


def test_wrong_digest_is_refused(http_server, tmp_path):
    """talos.config.sha256/sha512 mismatches stop the fetch and name both digests."""
    http_server.play(reply(200, BODY))
    good256, good512 = hashlib.sha256(BODY).hexdigest(), hashlib.sha512(BODY).hexdigest()
    assert fetcher(tmp_path).fetch(http_server.url(), good256, good512).data == BODY
    with pytest.raises(FetchError) as e:
        fetcher(tmp_path).fetch(http_server.url(), None, "ab" * 64)
    assert "ab" * 64 in str(e.value) and good512 in str(e.value)


def test_gzip_by_header_and_by_magic(http_server, tmp_path):
    """Content-Encoding: gzip and a plain .gz body both come back decompressed; gzip is asked for."""
    http_server.play(gzipped(BODY), gzipped(BODY, header=False))
    f = fetcher(tmp_path)
    assert f.fetch(http_server.url()).data == BODY
    assert f.fetch(http_server.url()).data == BODY
    assert http_server.requests[0][1]["Accept-Encoding"] == "gzip"


def test_gzip_bomb_is_refused(http_server, tmp_path):
    """A small gzip body that inflates past the cap is refused."""
    http_server.play(gzipped(b"\0" * 5_000_000))
    with pytest.raises(FetchError, match="decompresses to more than"):
        fetcher(tmp_path).fetch(http_server.url())


def test_retry_after_is_honoured(http_server, tmp_path):
    """A 503 or 429 with Retry-After waits at least that long before the next attempt."""
    sleeps = Sleeps()
    http_server.play(
        reply(503, headers={"Retry-After": "7"}),
        reply(429, headers={"Retry-After": "3"}),
        reply(200, BODY),
    )
    assert fetcher(tmp_path, sleeps).fetch(http_server.url()).data == BODY
    assert sleeps[0] >= 7 and sleeps[1] >= 3 and all(s < 8 for s in sleeps)


def test_redirect_is_followed(http_server, tmp_path):
    """A 302 to another path is followed."""
    http_server.play(reply(302, headers={"Location": "/real.yaml"}), reply(200, BODY))
    assert fetcher(tmp_path).fetch(http_server.url()).data == BODY
    assert [p for p, _ in http_server.requests] == ["/config.yaml", "/real.yaml"]


def test_redirect_to_a_local_file_is_refused(http_server, tmp_path):
    """A server cannot redirect the node into reading its own files."""
    http_server.play(reply(302, headers={"Location": "file:///etc/hostname"}))
    with pytest.raises(FetchError, match="refusing a redirect from http to file:///etc/hostname"):
        fetcher(tmp_path).fetch(http_server.url())


def test_connection_refused_is_retried_until_the_deadline(tmp_path, http_server):
    """Nothing listening: transport errors are retried, then the deadline gives up naming the error."""
    port = http_server.server_address[1]
    http_server.shutdown()
    http_server.server_close()
    with pytest.raises(FetchError, match=r"gave up after \d+ attempts.*ConnectionRefusedError"):
        fetcher(tmp_path, time.sleep, deadline=0.3, backoff_initial=0.05).fetch(
            f"http://127.0.0.1:{port}/c"
        )


def test_url_variables_are_sent(http_server, tmp_path):
    """${uuid} is filled from sysfs in the request the server sees."""
    dmi = tmp_path / "class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "product_uuid").write_text("ABCD-1\n")
    http_server.play(reply(200, BODY))
    fetcher(tmp_path).fetch(http_server.url("/c/${uuid}.yaml"))
    assert http_server.requests[0][0] == "/c/abcd-1.yaml"


def test_https_with_private_ca(https_server, private_ca, tmp_path):
    """HTTPS works when the image's extra CA file holds the server's CA."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(private_ca.ca_pem)
    https_server.play(reply(200, BODY))
    f = fetcher(tmp_path)
    f.extra_ca = ca
    assert f.fetch(https_server.url()).data == BODY


def test_https_without_the_ca_fails_clearly(https_server, tmp_path):
    """Without the CA the fetch stops at once with a TLS error saying the certificate is not trusted."""
    https_server.play(reply(200, BODY))
    f = fetcher(tmp_path)
    f.ca_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(
        FetchError, match=r"TLS: the certificate of 127\.0\.0\.1 is not trusted"
    ) as e:
        f.fetch(https_server.url())
    assert not e.value.transient
