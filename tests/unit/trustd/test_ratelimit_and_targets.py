"""trustd's per-address bucket (clock passed in) and where a worker looks for trustd."""

from __future__ import annotations

from talos_init.apid.worker_cert import csr_names, trustd_targets
from talos_init.trustd.ratelimit import RateLimit


def test_bucket_allows_a_burst_then_one_per_interval_per_address():
    """Five at once, then one every ten seconds; another address has its own bucket."""
    now = [0.0]
    rl = RateLimit(5, 0.1, lambda: now[0])
    assert [rl.allow("10.0.0.1") for _ in range(6)] == [True] * 5 + [False]
    assert rl.allow("10.0.0.2")
    now[0] = 9.0
    assert not rl.allow("10.0.0.1")
    now[0] = 10.5
    assert rl.allow("10.0.0.1") and not rl.allow("10.0.0.1")


def test_bucket_table_is_bounded():
    """With the table full of busy addresses a new one waits; refilled ones make room."""
    now = [0.0]
    rl = RateLimit(1, 0.1, lambda: now[0], max_keys=2)
    assert rl.allow("a") and rl.allow("b")
    assert not rl.allow("c")
    now[0] = 20.0  # a and b refilled: dropped to make room
    assert rl.allow("c")


def test_trustd_targets_from_the_endpoint_then_flags():
    """The controlplane endpoint's host on 50001 first, then --trustd values, without repeats."""
    config = {"cluster": {"controlPlane": {"endpoint": "https://192.168.100.1:6443"}}}
    assert trustd_targets(config, ["127.0.0.1:7000", "[::1]:7001", "cp2", "192.168.100.1:50001"]) == [
        ("192.168.100.1", 50001), ("127.0.0.1", 7000), ("::1", 7001), ("cp2", 50001)]
    assert trustd_targets({}, []) == []


def test_csr_names_leave_out_addresses_trustd_cannot_check():
    """The connection's own address, loopback and host names; IP certSANs are not asked for."""
    config = {"machine": {"network": {"hostname": "worker1"},
                          "certSANs": ["worker1.example", "203.0.113.9"]}}
    names = csr_names(config, "192.168.100.2")
    assert names[0] == "192.168.100.2" and "worker1" in names and "worker1.example" in names
    assert "203.0.113.9" not in names
