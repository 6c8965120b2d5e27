"""The fetcher's pure parts: URL variables, backoff, Retry-After, gzip limits, digests, redaction."""

from __future__ import annotations

import gzip
import hashlib
import random

import pytest

from talos_init.userdata import fetch
from talos_init.userdata.fetch import Fetcher, FetchError, FetchPolicy


def _link(sysfs, name, mac, ifindex, up=True, type_="1"):
    d = sysfs / "class/net" / name
    d.mkdir(parents=True)
    (d / "address").write_text(mac + "\n")
    (d / "type").write_text(type_ + "\n")
    (d / "ifindex").write_text(f"{ifindex}\n")
    (d / "operstate").write_text("up\n" if up else "down\n")


@pytest.fixture
def sysfs(tmp_path):
    _link(tmp_path, "lo", "00:00:00:00:00:00", 1, type_="772")
    _link(tmp_path, "eth1", "52:54:00:AA:BB:02", 3)
    _link(tmp_path, "eth0", "52:54:00:aa:bb:01", 2, up=False)
    dmi = tmp_path / "class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "product_uuid").write_text("4C4C4544-0042-3510-8051-B7C04F4E3332\n")
    (dmi / "product_serial").write_text("SN 42/x\n")
    return tmp_path


def test_url_variables_are_filled(sysfs):
    """${mac} (first Ethernet link that is up), ${uuid} (lowercase), ${serial} and ${hostname}, URL-quoted."""
    url = fetch.expand("http://h/c?mac=${mac}&u=${uuid}&s=${serial}&h=${hostname}", sysfs, "node-1")
    assert (
        url
        == "http://h/c?mac=52:54:00:aa:bb:02&u=4c4c4544-0042-3510-8051-b7c04f4e3332&s=SN%2042%2Fx&h=node-1"
    )


def test_mac_falls_back_to_first_link_by_index(sysfs):
    """With no link up, the lowest ifindex wins."""
    (sysfs / "class/net/eth1/operstate").write_text("down\n")
    assert fetch.first_mac(sysfs) == "52:54:00:aa:bb:01"


def test_unknown_variable_is_permanent_and_missing_value_is_transient(tmp_path):
    """A typo in a variable stops; a value not there yet (no DMI, no link) is retried."""
    with pytest.raises(FetchError, match=r"unknown URL variable \$\{macc\}") as e:
        fetch.expand("http://h/${macc}", tmp_path, None)
    assert not e.value.transient
    with pytest.raises(FetchError, match=r"\$\{uuid\} has no value") as e:
        fetch.expand("http://h/${uuid}", tmp_path, None)
    assert e.value.transient


def test_backoff_is_exponential_capped_and_jittered():
    """Delays double from the initial value up to the cap, each scaled by at most ±jitter."""
    f = Fetcher(FetchPolicy(backoff_initial=1, backoff_max=8, jitter=0.25), rng=random.Random(1))
    delays = [f.backoff(n, None) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        base = min(8, 2 ** (n - 1))
        assert base * 0.75 <= d <= min(8, base * 1.25)
    assert max(delays) <= 8 and len(set(delays)) == len(delays)
    assert f.backoff(100_000, None) <= 8  # a node retrying for days must not overflow


def test_retry_after_raises_the_delay_up_to_its_cap():
    """Retry-After lengthens a delay but never beyond retry_after_max."""
    f = Fetcher(FetchPolicy(backoff_initial=1, retry_after_max=60, jitter=0), rng=random.Random(1))
    assert f.backoff(1, 20) == 20
    assert f.backoff(1, 600) == 60
    assert f.backoff(1, 0) == 1


def test_parse_retry_after_seconds_and_date():
    """Retry-After is either seconds or an HTTP date."""
    assert fetch.parse_retry_after("120") == 120
    assert (
        fetch.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412480 - 30) == 30
    )
    assert fetch.parse_retry_after("soon") is None and fetch.parse_retry_after(None) is None


def test_gunzip_limits_output():
    """A gzip bomb stops at the limit; truncated or garbage gzip is refused."""
    assert fetch.gunzip(gzip.compress(b"a" * 100), 100) == b"a" * 100
    with pytest.raises(FetchError, match="decompresses to more than 100 bytes"):
        fetch.gunzip(gzip.compress(b"a" * 10_000_000), 100)
    with pytest.raises(FetchError, match="truncated"):
        fetch.gunzip(gzip.compress(b"a" * 1000)[:-12], 10_000)
    with pytest.raises(FetchError, match="not valid gzip"):
        fetch.gunzip(b"\x1f\x8bnot gzip at all", 100)


def test_digest_mismatch_names_both_digests():
    """A wrong sha256/sha512 is a permanent error naming the expected and the actual digest."""
    data = b"config"
    fetch.check_digests(data, hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest())
    wrong = "0" * 64
    with pytest.raises(FetchError) as e:
        fetch.check_digests(data, wrong, None)
    assert wrong in str(e.value) and hashlib.sha256(data).hexdigest() in str(e.value)
    assert not e.value.transient


def test_redact_hides_credentials_and_query_values():
    """Logged URLs carry neither userinfo nor query values."""
    assert (
        fetch.redact("https://u:p@h:8443/c.yaml?token=s3cret&x=1")
        == "https://h:8443/c.yaml?token=…&x=…"
    )


def test_file_url_reads_caps_and_gunzips(tmp_path):
    """file:// reads a local path, decompresses gzip by magic, refuses oversized files."""
    f = Fetcher(FetchPolicy(max_bytes=1000))
    (tmp_path / "c.yaml").write_bytes(b"version: v1alpha1\n")
    (tmp_path / "c.yaml.gz").write_bytes(gzip.compress(b"version: v1alpha1\n"))
    (tmp_path / "big").write_bytes(b"#" * 1001)
    assert f.attempt(f"file://{tmp_path}/c.yaml") == b"version: v1alpha1\n"
    assert f.attempt(f"file://{tmp_path}/c.yaml.gz") == b"version: v1alpha1\n"
    with pytest.raises(FetchError, match="larger than 1000 bytes"):
        f.attempt(f"file://{tmp_path}/big")
    with pytest.raises(FetchError, match="no such file"):
        f.attempt(f"file://{tmp_path}/missing")


def test_deadline_turns_transient_failures_into_one_final_error(tmp_path):
    """Past talos.config.deadline the fetch gives up with the attempt count and the last error."""
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    f = Fetcher(
        FetchPolicy(deadline=10, backoff_initial=1, backoff_max=4, jitter=0),
        sysfs=tmp_path,
        sleep=sleep,
        clock=lambda: now[0],
    )
    with pytest.raises(
        FetchError, match=r"gave up after 4 attempts .*deadline=10s.*\$\{uuid\} has no value"
    ) as e:
        f.fetch("http://127.0.0.1:9/${uuid}")
    assert not e.value.transient and slept == [1, 2, 4]
