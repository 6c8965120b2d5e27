"""The supervisor runs real processes in dependency order, gated by real readiness."""

import socket

import pytest

from talos_init.record import replace
from talos_init.service.definition import InvalidDefinitions, load_directory
from talos_init.service.supervisor import Supervisor

NOTIFY_AFTER = """
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
notify("READY=1")
signal.pause()
"""


def test_three_level_graph_starts_in_order_with_parallel_branches(harness):
    """base -> (left, right) -> top: each level after the one below is ready; left and right overlap."""
    h = harness
    defs = [h.define("base", NOTIFY_AFTER, readiness={"notify": True}),
            h.define("left", NOTIFY_AFTER, depends_on=["base"], readiness={"notify": True}),
            h.define("right", NOTIFY_AFTER, depends_on=["base"], readiness={"notify": True}),
            h.define("top", NOTIFY_AFTER, depends_on=["left", "right"], readiness={"notify": True})]
    defs[1:3] = [replace(d, argv=d.argv + ("0.5",)) for d in defs[1:3]]  # slow branches
    h.supervise(defs)
    h.wait_state("top", "ready")
    (base_ready,) = h.times("base", "ready")
    (left_start,), (right_start,) = h.times("left", "starting"), h.times("right", "starting")
    (left_ready,), (right_ready,) = h.times("left", "ready"), h.times("right", "ready")
    (top_start,) = h.times("top", "starting")
    assert base_ready <= left_start and base_ready <= right_start
    # Overlap: each branch started before the other one was ready.
    assert left_start < right_ready and right_start < left_ready
    assert top_start >= max(left_ready, right_ready)
    assert h.sequence("top") [-4:] == ["waiting", "starting", "running", "ready"]
    assert h.sequence("base") == ["waiting", "starting", "running", "ready"]


def test_ready_over_notify_socket_gates_dependents(harness):
    """A dependent stays waiting while its dependency runs without READY=1, then starts."""
    h = harness
    go = h.tmp / "go"
    defs = [h.define("gate", f"""
while not Path({str(go)!r}).exists():
    time.sleep(0.05)
notify("STATUS=opened\\nREADY=1")
signal.pause()
""", readiness={"notify": True}),
            h.define("after", NOTIFY_AFTER, depends_on=["gate"], readiness={"notify": True})]
    sup = h.supervise(defs)
    h.wait_state("gate", "running")
    h.idle(0.5)
    assert h.state("after") == "waiting"
    assert sup.core.status["after"].reason == "waiting for gate (running)"
    go.touch()
    h.wait_state("after", "ready")
    assert h.times("after", "starting")[0] >= h.times("gate", "ready")[0]
    gate = next(s for s in sup.services() if s["id"] == "gate")
    assert gate["status"] == "opened" and gate["state"] == "ready" and gate["pid"] > 0


def test_http_probe_gates_dependents(harness):
    """A probe against a real HTTP port on 127.0.0.1 makes the service ready only on 2xx."""
    h = harness
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = h.define("web", f"""
from http.server import BaseHTTPRequestHandler, HTTPServer
started = time.monotonic()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = time.monotonic() - started > 1.0 and self.path == "/healthz"
        self.send_response(200 if ok else 503)
        self.end_headers()
    def log_message(self, *a):
        print("probe", self.path, flush=True)
time.sleep(0.3)  # not even listening at first
HTTPServer(("127.0.0.1", {port}), H).serve_forever()
""", readiness={"probe": {"http": f"http://127.0.0.1:{port}/healthz", "period": 0.2,
                          "timeout": 1}})
    sup = h.supervise([server, h.define("client", NOTIFY_AFTER, depends_on=["web"])])
    h.wait_state("web", "running")
    h.wait_state("client", "ready")
    web = next(s for s in sup.services() if s["id"] == "web")
    assert web["health"] == "ok" and "HTTP 200" in web["health_message"]
    (ready_at,) = h.times("web", "ready")
    assert h.times("client", "starting")[0] >= ready_at
    assert ready_at - h.times("web", "running")[0] >= 1.0  # the 503s did not count
    assert "probe ok: GET" in sup.core.status["web"].history[-1].reason or \
        any("probe ok" in t.reason for t in sup.core.status["web"].history)
    assert any(line.startswith("probe /healthz") for line in sup.logs("web"))


def test_tcp_and_unix_probes_connect(harness):
    """tcp and unix probes are ready once something accepts connections."""
    h = harness
    sock_path = h.tmp / "svc.sock"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    defs = [h.define("tcp", f"""
s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen(); signal.pause()
""", readiness={"probe": {"tcp": f"127.0.0.1:{port}", "period": 0.1}}),
            h.define("unix", f"""
time.sleep(0.3)
s = socket.socket(socket.AF_UNIX); s.bind({str(sock_path)!r}); s.listen(); signal.pause()
""", readiness={"probe": {"unix": str(sock_path), "period": 0.1}})]
    h.supervise(defs)
    h.wait_state("tcp", "ready")
    h.wait_state("unix", "ready")


def test_crashing_service_backs_off_and_recovers(harness):
    """Three crashes in a row show as a crash loop with growing delays, then it runs."""
    h = harness
    count = h.tmp / "count"
    d = h.define("flaky", f"""
p = Path({str(count)!r})
n = int(p.read_text()) if p.exists() else 0
p.write_text(str(n + 1))
if n < 3:
    print("crashing", n, flush=True)
    sys.exit(1)
notify("READY=1")
signal.pause()
""", readiness={"notify": True}, restart="always")
    sup = h.supervise([d])
    h.wait_state("flaky", "ready")
    st = sup.core.status["flaky"]
    assert st.restarts == 3
    backoffs = [e.reason for e in h.events.history("service", "flaky") if e.state == "backoff"]
    assert backoffs[0].startswith("exited with code 1; restart in")
    assert backoffs[2].startswith("crashed 3 times in a row: exited with code 1; restart in")
    delays = [e.fields["delay"] for e in h.events.history("service", "flaky") if e.state == "backoff"]
    assert delays[0] <= 0.12 and delays[0] < delays[1] < delays[2]
    assert h.sequence("flaky")[-3:] == ["starting", "running", "ready"]
    assert sup.logs("flaky") == ["crashing 0", "crashing 1", "crashing 2"]


def test_sigterm_ignored_is_killed_after_timeout_with_its_grandchild(harness):
    """A service ignoring SIGTERM is SIGKILLed at its timeout; its forked grandchild dies too."""
    from tests.host.service.conftest import alive
    h = harness
    pidfile = h.tmp / "grandchild.pid"
    d = h.define("stubborn", f"""
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = os.fork()
if child == 0:
    while True:
        time.sleep(1)
Path({str(pidfile)!r}).write_text(str(child))
notify("READY=1")
while True:
    time.sleep(1)
""", readiness={"notify": True}, stop={"timeout": 0.5})
    sup = h.supervise([d])
    h.wait_state("stubborn", "ready")
    grandchild = int(pidfile.read_text())
    main = sup.core.status["stubborn"].pid
    assert alive(grandchild) and alive(main)
    t0 = h.loop.clock()
    sup.stop_service("stubborn")
    h.wait_state("stubborn", "finished")
    assert h.loop.clock() - t0 >= 0.5
    reasons = [e.reason for e in h.events.history("service", "stubborn")]
    assert "did not stop within 0.5s: sending SIGKILL" in reasons
    assert reasons[-1] == "stopped: killed by signal 9 (SIGKILL)"
    h.wait(lambda: not alive(grandchild), timeout=10)
    assert not alive(main)


def test_cycle_and_unknown_dependency_rejected_before_anything_starts(harness, tmp_path):
    """Loading names the cycle path and the unknown edge; no service process is ever started."""
    h = harness
    services = tmp_path / "services"
    services.mkdir()
    marker = tmp_path / "started"
    argv = h.program("touch", f"Path({str(marker)!r}).touch()")
    for sid, deps in {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["ghost"], "e": []}.items():
        (services / f"{sid}.yaml").write_text(
            f"id: {sid}\nargv: {argv!r}\ndepends_on: {deps!r}\n".replace("'", '"'))
    with pytest.raises(InvalidDefinitions) as info:
        load_directory(services)
    messages = [str(e) for e in info.value.errors]
    assert any(m.endswith("d.yaml: depends_on[0]: unknown dependency: d -> ghost (no service 'ghost')")
               for m in messages), messages
    assert any("dependency cycle: a -> b -> c -> a (edge c -> a closes it)" in m
               and "c.yaml: depends_on[0]" in m for m in messages), messages
    assert len(messages) == 2
    # The supervisor refuses the same graph on its own, before spawning anything.
    from talos_init.service.definition import parse
    defs = [parse({"id": s, "argv": argv, "depends_on": deps})[0]
            for s, deps in {"a": ["b"], "b": ["a"], "e": []}.items()]
    with pytest.raises(InvalidDefinitions, match=r"a -> b -> a"):
        Supervisor(h.loop, h.reaper, h.events, defs, h.paths, cgroup_root=None)
    assert not marker.exists()


def test_service_cannot_mark_another_ready(harness):
    """READY=1 counts only for the sender's own service; MAINPID of another is refused."""
    h = harness
    victim = h.define("victim", "signal.pause()", readiness={"notify": True})
    liar = h.define("liar", f"""
victim = int(sys.argv[1]) if len(sys.argv) > 1 else 0
for line in open("/proc/self/environ", "rb").read().split(b"\\0"):
    pass
Path({str(h.tmp / 'victim.pid')!r}).exists()
time.sleep(0.3)
v = int(Path({str(h.tmp / 'victim.pid')!r}).read_text())
notify(f"MAINPID={{v}}\\nREADY=1")
signal.pause()
""", readiness={"notify": True})
    dependent = h.define("dependent", "signal.pause()", depends_on=["victim"])
    sup = h.supervise([victim, liar, dependent])
    h.wait_state("victim", "running")
    (h.tmp / "victim.pid").write_text(str(sup.core.status["victim"].pid))
    h.wait_state("liar", "ready")
    # An outsider (this test process) is not attributed to any service either.
    from talos_init.sdnotify import notify
    assert notify("READY=1", str(h.paths.notify_socket))
    h.idle(0.5)
    assert h.state("victim") == "running" and h.state("dependent") == "waiting"
    assert sup.core.status["liar"].pid != sup.core.status["victim"].pid
    assert sup.notify is not None and sup.notify.dropped == 1


def test_event_log_order_matches_each_services_history(harness):
    """Events reach the EventLog in the order the core made the transitions."""
    h = harness
    defs = [h.define("base", NOTIFY_AFTER, readiness={"notify": True}),
            h.define("top", NOTIFY_AFTER, depends_on=["base"], readiness={"notify": True})]
    sup = h.supervise(defs)
    h.wait_state("top", "ready")
    for sid in ("base", "top"):
        logged = [(e.state, e.reason) for e in h.events.history("service", sid)]
        assert logged == [(t.state.value, t.reason) for t in sup.core.status[sid].history]
    assert [e.reason for e in h.events.history("service", "top")][1:3] == [
        "waiting for base (starting)", "waiting for base (running)"]
