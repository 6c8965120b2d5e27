"""The orchestration core, driven without processes: state sequences per scenario."""

import signal

import pytest

from talos_init.service.state import Ev, IllegalTransition, State, Status
from tests.unit.service.conftest import Sim, define

NOTIFY = {"readiness": {"notify": True}}


def test_chain_starts_in_dependency_order():
    """A service starts only once its dependency is ready, level by level."""
    s = Sim([define("a", **NOTIFY), define("b", depends_on=["a"], **NOTIFY),
             define("c", depends_on=["b"], **NOTIFY)]).start()
    assert s.spawned == ["a"]
    assert s.state("b") == "waiting" and s.core.status["b"].reason.startswith("waiting for a")
    s.ready("a")
    assert s.spawned == ["a", "b"]
    s.ready("b")
    assert s.spawned == ["a", "b", "c"]
    assert s.seq("a") == ["waiting", "starting", "running", "ready"]
    assert [(t.state.value, t.reason) for t in s.core.status["c"].history] == [
        ("waiting", "graph loaded"), ("waiting", "waiting for b (waiting)"),
        ("waiting", "waiting for b (starting)"), ("waiting", "waiting for b (running)"),
        ("starting", "dependencies ready"), ("running", "pid 103")]


def test_independent_services_start_together():
    """Services with no edge between them are spawned in the same step."""
    s = Sim([define("a", **NOTIFY), define("b", **NOTIFY),
             define("c", depends_on=["a", "b"])]).start()
    assert sorted(s.spawned) == ["a", "b"]
    s.ready("b")
    assert "c" not in s.spawned and "waiting for a" in s.core.status["c"].reason
    s.ready("a")
    assert s.spawned[-1] == "c" and s.state("c") == "ready"


def test_failed_dependency_leaves_dependents_waiting_with_reason():
    """A dependency that fails for good keeps dependents waiting, saying why."""
    s = Sim([define("a", restart="never", **NOTIFY), define("b", depends_on=["a"])]).start()
    s.exit("a", code=1)
    assert s.state("a") == "failed"
    assert s.state("b") == "waiting"
    assert s.core.status["b"].reason == "dependency a failed: exited with code 1"
    assert "b" not in s.spawned


def test_one_shot_finished_satisfies_dependents():
    """A one-shot that exits 0 is finished, and its dependents start."""
    s = Sim([define("fetch", readiness={"exit": True}, restart="on-failure"),
             define("use", depends_on=["fetch"])]).start()
    assert s.spawned == ["fetch"]
    s.exit("fetch", 0)
    assert s.seq("fetch") == ["waiting", "starting", "running", "finished"]
    assert s.state("use") == "ready"


def test_backoff_grows_then_resets_after_stable_run():
    """Crash after crash the delay doubles (with jitter); a stable run resets it."""
    s = Sim([define("a", restart="always", backoff={"initial": 0.1, "max": 1, "stable_after": 5})]).start()
    delays = []
    for _ in range(6):
        s.exit("a", code=1, after=0.01)
        delays.append(s.timers[("a", "backoff")] - s.now)
        assert s.state("a") == "backoff"
        s.fire("a", "backoff")
    for i, d in enumerate(delays):
        base = min(1.0, 0.1 * 2 ** i)
        assert base * 0.8 - 1e-9 <= d <= min(1.0, base * 1.2) + 1e-9
    assert delays[0] < delays[1] < delays[2] < delays[3]
    backoffs = [t.reason for t in s.core.status["a"].history if t.state is State.BACKOFF]
    assert backoffs[-1].startswith("crashed 6 times in a row: exited with code 1; restart in")
    assert s.core.status["a"].restarts == 6
    s.exit("a", code=1, after=10)  # stable for 10 s: counts as the first crash again
    assert s.core.status["a"].crashes_in_row == 1
    assert s.timers[("a", "backoff")] - s.now <= 0.12
    assert s.seq("a")[-5:] == ["backoff", "starting", "running", "ready", "backoff"]


def test_stop_all_goes_in_reverse_dependency_order():
    """Shutdown signals dependents first and a dependency only after they exited."""
    s = Sim([define("a", **NOTIFY), define("b", depends_on=["a"], **NOTIFY),
             define("c", depends_on=["b"], **NOTIFY), define("d", depends_on=["a"], **NOTIFY)]).start()
    for x in ("a", "b", "c", "d"):
        s.ready(x)
    s.run(s.core.stop_all(s.now))
    assert sorted(x for x, _ in s.signals) == ["c", "d"]
    s.exit("c")
    assert [x for x, _ in s.signals] [-1] == "b"
    s.exit("d")
    assert "a" not in [x for x, _ in s.signals]
    s.exit("b")
    assert [x for x, _ in s.signals][-1] == "a" and not s.stopped
    s.exit("a")
    assert s.stopped
    assert s.seq("c")[-2:] == ["stopping", "finished"]


def test_stop_timeout_escalates_to_sigkill():
    """A service that ignores its stop signal gets SIGKILL when the timeout fires."""
    s = Sim([define("a", stop={"signal": "SIGINT", "timeout": 2})]).start()
    s.run(s.core.request_stop("a", s.now))
    assert s.signals == [("a", signal.SIGINT)]
    s.fire("a", "stop")
    assert s.signals[-1] == ("a", signal.SIGKILL)
    s.exit("a", code=137)
    assert s.seq("a")[-3:] == ["stopping", "stopping", "finished"]
    assert s.core.status["a"].want.value == "down"


def test_waiting_and_backoff_services_are_cancelled_by_stop_all():
    """Services without a process end at once on shutdown; nothing restarts."""
    s = Sim([define("a", **NOTIFY), define("b", depends_on=["a"]),
             define("c", restart="always")]).start()
    s.exit("c", 1)
    s.run(s.core.stop_all(s.now))
    assert s.state("b") == "finished" and s.state("c") == "finished"
    assert ("c", "backoff") not in s.timers
    s.exit("a")
    assert s.stopped


def test_condition_unmet_waits_and_rechecks():
    """An unmet condition keeps the service waiting with the reason, then a re-check starts it."""
    present = set()
    s = Sim([define("a", conditions=[{"file_exists": "/x"}])],
            check_conditions=lambda d: None if "/x" in present else "file_exists /x").start()
    assert s.state("a") == "waiting" and s.core.status["a"].reason == "condition not met: file_exists /x"
    assert ("", "conditions") in s.timers
    present.add("/x")
    s.fire("", "conditions")
    assert s.state("a") == "ready"


def test_skipped_dependency_is_reported_not_failed():
    """skip_unless false: the service is skipped and dependents say so."""
    s = Sim([define("kubelet", skip_unless=[{"file_exists": "/usr/bin/kubelet"}]),
             define("after", depends_on=["kubelet"])],
            check_skip=lambda d: "file_exists /usr/bin/kubelet" if d.skip_unless else None).start()
    assert s.state("kubelet") == "skipped"
    assert s.core.status["after"].reason.startswith("dependency kubelet skipped")


def test_a_one_shot_done_already_finishes_without_a_process_and_its_dependents_start():
    """done_if holds (PID 1 mounted /var): finished, exit ok, nothing spawned; else it runs."""
    done = {"/run/talos/var.json"}
    defs = [define("var", readiness={"exit": True}, restart="never",
                   done_if=[{"file_exists": "/run/talos/var.json"}]),
            define("after", depends_on=["var"])]

    def check_done(d):
        return "done_if holds" if d.done_if and "/run/talos/var.json" in done else None

    s = Sim(defs, check_done=check_done).start()
    assert s.state("var") == "finished" and s.core.status["var"].reason == "done_if holds"
    assert "var" not in s.spawned and s.state("after") == "ready"
    done.clear()
    s = Sim(defs, check_done=check_done).start()
    assert s.spawned == ["var"] and s.state("after") == "waiting"


def test_spawn_failure_backs_off_and_restart_request_restarts():
    """A spawn failure goes through the restart policy; restart stops then starts."""
    s = Sim([define("a")])
    s.fail_spawn["a"] = "chdir /nope: no such file"
    s.start()
    assert s.state("a") == "backoff" and "cannot start: chdir /nope" in s.core.status["a"].reason
    del s.fail_spawn["a"]
    s.fire("a", "backoff")
    assert s.state("a") == "ready"
    s.run(s.core.request_restart("a", s.now))
    assert s.state("a") == "stopping"
    s.exit("a", code=0)
    assert s.seq("a")[-6:] == ["stopping", "finished", "waiting", "starting", "running", "ready"]


def test_stale_exit_and_late_ready_are_ignored():
    """An exit for an old pid and a READY after the fact change nothing."""
    s = Sim([define("a", **NOTIFY)]).start()
    assert s.core.on_exited("a", 99999, "exited with code 1", False, 0) == []
    s.ready("a")
    assert s.core.on_ready("a", "READY=1", 0) == []
    assert s.seq("a") == ["waiting", "starting", "running", "ready"]


def test_probe_threshold_marks_unhealthy_and_recovers():
    """Probe failures reach the threshold once, then a success reports healthy again."""
    s = Sim([define("a", readiness={"probe": {"tcp": "127.0.0.1:1", "failure_threshold": 2}})]).start()
    s.run(s.core.on_probe("a", False, "refused", 0))
    assert s.state("a") == "running"
    s.run(s.core.on_probe("a", True, "connected", 0))
    assert s.state("a") == "ready"
    for _ in range(3):
        s.run(s.core.on_probe("a", False, "refused", 0))
    health = [r.reason for r in s.records if r.kind == "health"]
    assert health == ["unhealthy: 2 probes failed in a row: refused"]
    s.run(s.core.on_probe("a", True, "connected", 0))
    assert s.core.status["a"].healthy is True and len([r for r in s.records if r.kind == "health"]) == 2


def test_illegal_event_names_state_and_event():
    """The table refuses an event that cannot happen in a state."""
    st = Status("svc")
    with pytest.raises(IllegalTransition, match="service svc: event ready is not allowed in state waiting"):
        st.apply(Ev.READY, "", 0)
    assert st.state is State.WAITING
