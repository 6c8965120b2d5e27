"""What the core says of each service's health (osctl services' HEALTH column), without processes."""

from talos_init.service.core import Health
from tests.unit.service.conftest import Sim, define

PROBE = {"readiness": {"probe": {"tcp": "127.0.0.1:1", "failure_threshold": 3}}}


def test_a_notify_service_is_ok_from_its_ready_1_and_unknown_before():
    """Before READY=1 nothing is known; after it the service is ok since that moment."""
    s = Sim([define("a", readiness={"notify": True})]).start()
    assert s.core.health("a") == Health("unknown", "waiting for READY=1")
    s.now = 4.0
    s.ready("a")
    assert s.core.health("a") == Health("ok", "READY=1", 4.0)


def test_a_service_without_readiness_check_is_ok_once_running():
    """readiness none: ready at spawn, so ok since then, saying there is no check."""
    s = Sim([define("a")]).start()
    assert s.core.health("a") == Health("ok", "running (no readiness check)", 0.0)


def test_a_probed_service_follows_its_last_probe_with_the_time_the_result_began():
    """ok after a passing probe; failing with the last error since the first failure of the row."""
    s = Sim([define("a", **PROBE)]).start()
    assert s.core.health("a") == Health("unknown", "no probe result yet")
    s.now = 1.0
    s.run(s.core.on_probe("a", True, "connected to 127.0.0.1:1", s.now))
    s.now = 2.0
    s.run(s.core.on_probe("a", True, "connected to 127.0.0.1:1", s.now))
    assert s.core.health("a") == Health("ok", "connected to 127.0.0.1:1", 1.0)
    s.now = 5.0
    s.run(s.core.on_probe("a", False, "connect 127.0.0.1:1: ECONNREFUSED", s.now))
    s.now = 6.0
    s.run(s.core.on_probe("a", False, "timed out after 1s", s.now))
    assert s.core.health("a") == Health("failing", "timed out after 1s", 5.0)
    s.now = 9.0
    s.run(s.core.on_probe("a", True, "connected to 127.0.0.1:1", s.now))
    assert s.core.health("a") == Health("ok", "connected to 127.0.0.1:1", 9.0)


def test_a_probe_failing_before_the_first_success_shows_failing():
    """A service that never passed its probe is failing (not unknown) once a probe failed."""
    s = Sim([define("a", **PROBE)]).start()
    s.now = 3.0
    s.run(s.core.on_probe("a", False, "connect 127.0.0.1:1: ECONNREFUSED", s.now))
    assert s.state("a") == "running"
    assert s.core.health("a") == Health("failing", "connect 127.0.0.1:1: ECONNREFUSED", 3.0)


def test_one_shots_and_services_not_running_have_no_health():
    """A one-shot (running or done) and an ended service: no health applies."""
    s = Sim([define("once", readiness={"exit": True}), define("a", restart="never", **PROBE)]).start()
    assert s.core.health("once") == Health(None)
    s.exit("once", 0)
    assert s.core.health("once") == Health(None)
    s.run(s.core.on_probe("a", True, "connected", s.now))
    s.exit("a", 1)
    assert s.state("a") == "failed" and s.core.health("a") == Health(None)


def test_a_restart_forgets_the_previous_process_health():
    """After a crash and restart the new process starts from unknown, not the old ok."""
    s = Sim([define("a", restart="always", **PROBE)]).start()
    s.run(s.core.on_probe("a", True, "connected", s.now))
    s.exit("a", 1, after=1.0)
    s.fire("a", "backoff")
    assert s.state("a") == "running" and s.core.health("a") == Health("unknown", "no probe result yet")
