"""Start conditions read from a (temporary) host tree, and the pure backoff policy."""

import random

from talos_init.paths import Paths
from talos_init.service.backoff import Backoff
from talos_init.service.conditions import Conditions
from tests.unit.service.conftest import define


def _link(root, name, operstate, carrier):
    d = root / "sys/class/net" / name
    d.mkdir(parents=True)
    (d / "operstate").write_text(operstate + "\n")
    if carrier is not None:
        (d / "carrier").write_text(carrier + "\n")


def test_network_up_needs_a_link_and_a_default_route(tmp_path):
    """network_up holds only with a non-loopback link up and a default route."""
    c = Conditions(Paths(tmp_path))
    d = define("kubelet", conditions=[{"network_up": True}, {"file_exists": "/run/x"}])
    _link(tmp_path, "lo", "unknown", "1")
    _link(tmp_path, "eth1", "down", None)  # carrier unreadable while down
    assert c.check_conditions(d) == "network_up (no link is up), file_exists /run/x"
    _link(tmp_path, "eth0", "up", "1")
    assert c.check_conditions(d).startswith("network_up (no default route)")
    (tmp_path / "proc/net").mkdir(parents=True)
    (tmp_path / "proc/net/route").write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run/x").touch()
    assert c.check_conditions(d) is None


def test_time_sane_and_skip_unless():
    """time_sane follows the wall clock; skip_unless gives a 'skip' reason."""
    now = [0.0]
    c = Conditions(Paths(), wall_clock=lambda: now[0])
    d = define("ntpd-user", conditions=[{"time_sane": True}],
               skip_unless=[{"file_exists": "/nonexistent/kubelet"}])
    assert c.check_conditions(d) == "time_sane (clock not set)"
    now[0] = 1.8e9
    assert c.check_conditions(d) is None
    assert c.check_skip(d) == "skip_unless not met: file_exists /nonexistent/kubelet"


def test_done_if_needs_every_condition(tmp_path):
    """done_if: a reason only when all hold; a definition without it is never done."""
    c = Conditions(Paths(tmp_path))
    d = define("var", readiness={"exit": True},
               done_if=[{"file_exists": "/run/var.json"}, {"file_exists": "/run/var.early"}])
    (tmp_path / "run").mkdir()
    (tmp_path / "run/var.json").touch()
    assert c.check_done(d) is None
    (tmp_path / "run/var.early").touch()
    assert c.check_done(d) == ("done_if holds: file_exists /run/var.json, "
                               "file_exists /run/var.early")
    assert c.check_done(define("other", readiness={"exit": True})) is None


def test_backoff_doubles_to_the_cap_and_resets_after_stable_run():
    """Delays double from ~100 ms, never pass the cap, and a stable run starts over."""
    b, rng = Backoff(), random.Random(7)
    delays = [b.delay(n, rng) for n in range(1, 12)]
    assert 0.08 <= delays[0] <= 0.12
    assert all(d <= 30.0 for d in delays) and delays[-1] >= 24.0
    assert b.crashes_after(5, run_seconds=2.0) == 6
    assert b.crashes_after(5, run_seconds=10.0) == 1


def test_config_in_follows_the_effective_config(tmp_path):
    """config_in holds when the config value is one listed; skipped with the value it has."""
    import json

    c = Conditions(Paths(tmp_path))
    d = define("trustd", skip_unless=[{"config_in": "machine.type=controlplane,init"}])
    assert "not set" in c.check_skip(d)  # no config yet
    (tmp_path / "run/talos").mkdir(parents=True)
    config = tmp_path / "run/talos/config.json"
    config.write_text(json.dumps({"machine": {"type": "worker"}}))
    assert c.check_skip(d) == ("skip_unless not met: config_in machine.type=controlplane,init "
                               "(machine.type is worker)")
    for kind in ("controlplane", "init"):
        config.write_text(json.dumps({"machine": {"type": kind}}))
        assert c.check_skip(d) is None


def test_config_in_syntax_is_checked_at_load():
    """A config_in without PATH=VALUES is a definition error naming the field."""
    from talos_init.service.definition import parse

    _, errors = parse({"id": "x", "argv": ["/bin/x"], "skip_unless": [{"config_in": "machine.type"}]})
    assert any("skip_unless[0].config_in" in str(e) for e in errors), errors
