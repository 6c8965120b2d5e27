"""Logs, config values, API requests and shutdown order with real processes."""

import os
import time
from pathlib import Path


def test_output_is_captured_cut_followed_and_written_to_file(harness):
    """stdout and stderr land in the ring in order; a long line is cut; the file gets them too."""
    h = harness
    d = h.define("talker", """
print("hello", flush=True)
print("x" * 500, flush=True)
print("to stderr", file=sys.stderr, flush=True)
time.sleep(0.3)
print("later", flush=True)
""", readiness={"exit": True}, restart="never", logs={"max_line": 100})
    sup = h.supervise([d])
    followed = []
    sup.follow_logs("talker", followed.append)
    sup.set_log_dir(h.tmp)
    h.wait_state("talker", "finished")
    h.wait(lambda: "later" in sup.logs("talker"))
    assert sup.logs("talker") == ["hello", "x" * 100 + " [line cut: 400 more bytes dropped]",
                                  "to stderr", "later"]
    assert sup.logs("talker", tail=1) == ["later"]
    assert followed[-1] == "later"
    assert (h.tmp / "talker.log").read_text().splitlines()[-1].endswith(" later")


def test_config_values_are_filled_when_the_service_starts(harness):
    """A placeholder is resolved from config.json at start, not at load."""
    h = harness
    d = h.define("kubelet", "print(' '.join(sys.argv[1:]), flush=True)",
                 readiness={"exit": True}, restart="never",
                 args_from={"config": "machine.kubelet.extraArgs"})
    from talos_init.record import replace
    d = replace(d, argv=d.argv + ("--node-ip=${config:machine.kubelet.nodeIP}",))
    gate = h.define("userdata", f"""
import json
Path({str(h.paths.effective_config)!r}).write_text(json.dumps(
    {{"machine": {{"kubelet": {{"nodeIP": "10.5.0.2", "extraArgs": {{"v": 3}}}}}}}}))
""", readiness={"exit": True}, restart="never")
    d = replace(d, depends_on=("userdata",))
    sup = h.supervise([gate, d])
    h.wait_state("kubelet", "finished")
    h.wait(lambda: sup.logs("kubelet"))
    assert sup.logs("kubelet") == ["--node-ip=10.5.0.2 --v=3"]


def test_missing_config_value_fails_start_with_its_path(harness):
    """Without the value the start fails, naming the config path."""
    h = harness
    d = h.define("needs", "pass", restart="never")
    from talos_init.record import replace
    d = replace(d, argv=d.argv + ("${config:machine.kubelet.nodeIP}",))
    sup = h.supervise([d])
    h.wait_state("needs", "failed")
    assert sup.core.status["needs"].reason == \
        "cannot start: config value machine.kubelet.nodeIP is not set"


def test_restart_and_stop_requests_and_services_view(harness):
    """restart_service gives a new pid; stop_service keeps it down; services() shows it."""
    h = harness
    d = h.define("api", 'notify("READY=1")\nsignal.pause()', readiness={"notify": True})
    sup = h.supervise([d])
    h.wait_state("api", "ready")
    first = sup.core.status["api"].pid
    sup.restart_service("api")
    h.wait(lambda: h.state("api") == "ready" and sup.core.status["api"].pid != first)
    assert h.sequence("api")[-6:] == ["stopping", "finished", "waiting", "starting", "running", "ready"]
    view = sup.services()[0]
    assert view["id"] == "api" and view["state"] == "ready" and view["uptime"] >= 0
    assert view["events"][-1]["state"] == "ready" and view["restarts"] == 0
    sup.stop_service("api")
    h.wait_state("api", "finished")
    h.idle(0.3)
    assert h.state("api") == "finished" and sup.services()[0]["want"] == "down"
    sup.start_service("api")
    h.wait_state("api", "ready")


def test_stop_all_stops_dependents_first_with_real_processes(harness):
    """Shutdown order: a service gets its stop signal only after its dependents exited."""
    h = harness
    slow_exit = """
def term(*_):
    time.sleep(0.3)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
notify("READY=1")
while True:
    time.sleep(1)
"""
    defs = [h.define("base", slow_exit, readiness={"notify": True}),
            h.define("mid", slow_exit, depends_on=["base"], readiness={"notify": True}),
            h.define("top", slow_exit, depends_on=["mid"], readiness={"notify": True})]
    sup = h.supervise(defs)
    h.wait_state("top", "ready")
    done = []
    t0 = time.monotonic()
    sup.stop_all(on_done=lambda: done.append(time.monotonic()))
    h.wait(lambda: done)
    (top_end,), (mid_stop,) = h.times("top", "finished"), h.times("mid", "stopping")
    (mid_end,), (base_stop,) = h.times("mid", "finished"), h.times("base", "stopping")
    assert top_end <= mid_stop and mid_end <= base_stop
    assert done[0] - t0 >= 0.9  # three 0.3 s exits, one after another
    h.sup = None  # already stopped
    sup.close()


def test_stop_all_deadline_kills_what_is_left(harness):
    """stop_all's overall timeout SIGKILLs survivors and still calls on_done."""
    h = harness
    d = h.define("deaf", "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                 "notify('READY=1')\nsignal.pause()", readiness={"notify": True},
                 stop={"timeout": 60})
    sup = h.supervise([d])
    h.wait_state("deaf", "ready")
    done = []
    sup.stop_all(h.loop.clock() + 0.5, lambda: done.append(True))
    h.wait(lambda: done, timeout=10)
    h.wait_state("deaf", "finished")
    assert sup.core.status["deaf"].last_exit == "killed by signal 9 (SIGKILL)"


def test_mainpid_hands_over_to_a_forked_daemon(harness):
    """A daemon that forks away and reports MAINPID= is followed to the new pid."""
    h = harness
    d = h.define("forker", """
child = os.fork()
if child:
    notify(f"MAINPID={child}")
    os._exit(0)   # at once: PID 1 must read the message before it handles this exit
notify("READY=1")
while True:
    time.sleep(1)
""", readiness={"notify": True})
    sup = h.supervise([d])
    h.wait_state("forker", "ready")
    first = sup.core.status["forker"].session
    h.wait(lambda: sup.core.status["forker"].pid != first)
    h.idle(0.6)  # the original process exits meanwhile: not the service's end
    daemon = sup.core.status["forker"].pid
    assert h.state("forker") == "ready"
    import os
    import signal as sig
    os.kill(daemon, sig.SIGKILL)
    h.wait_state("forker", "backoff")
    assert sup.core.status["forker"].last_exit == "killed by signal 9 (SIGKILL)"


def test_create_loads_the_services_directory_and_opens_var_logs(harness):
    """init.py's factory runs the image's directory; after the var one-shot, logs go to /var/log."""
    from types import SimpleNamespace

    from talos_init.service.supervisor import create
    h = harness
    h.paths.services.mkdir(parents=True)
    var_log = h.paths.at("/var/log")
    for sid, extra in {"var": "readiness: {exit: true}\nrestart: never\n",
                       "app": "depends_on: [var]\n"}.items():
        argv = h.program(sid, f"print('{sid} says hi', flush=True)\n"
                              + ("signal.pause()\n" if sid == "app" else ""))
        (h.paths.services / f"{sid}.yaml").write_text(
            f"id: {sid}\nargv: {argv}\n{extra}".replace("'", '"'))
    ctx = SimpleNamespace(loop=h.loop, reaper=h.reaper, events=h.events, paths=h.paths)
    h.sup = sup = create(ctx)
    sup.start()
    h.wait_state("app", "ready")
    h.wait(lambda: (var_log / "app.log").exists() and "app says hi" in (var_log / "app.log").read_text())
    assert "var says hi" in (var_log / "var.log").read_text()  # the ring was written first


def test_create_refuses_an_invalid_directory_and_records_why(harness):
    """An unknown dependency in the image: nothing is built, the error is an event."""
    from types import SimpleNamespace

    import pytest

    from talos_init.service.definition import InvalidDefinitions
    from talos_init.service.supervisor import create
    h = harness
    h.paths.services.mkdir(parents=True)
    (h.paths.services / "kubelet.yaml").write_text("id: kubelet\nargv: [/bin/k]\ndepends_on: [cri]\n")
    ctx = SimpleNamespace(loop=h.loop, reaper=h.reaper, events=h.events, paths=h.paths)
    with pytest.raises(InvalidDefinitions):
        create(ctx)
    (event,) = h.events.history("service", "graph")
    assert event.state == "invalid" and "kubelet -> cri" in event.reason


def test_create_without_a_services_directory_runs_an_empty_graph(harness):
    """No services directory (a bare root) is a warning and an empty graph, not a failure."""
    from types import SimpleNamespace

    from talos_init.service.supervisor import create
    h = harness
    ctx = SimpleNamespace(loop=h.loop, reaper=h.reaper, events=h.events, paths=h.paths)
    h.sup = sup = create(ctx)
    sup.start()
    assert sup.services() == []
    done = []
    sup.stop_all(h.loop.clock() + 5, lambda: done.append(True))
    assert done == [True]


def test_stop_all_closes_the_service_log_files(harness):
    """Once every service stopped, no log file stays open (it kept /var busy at shutdown)."""
    h = harness
    logs = h.tmp / "varlog"
    logs.mkdir()
    d = h.define("talker", "print('hi', flush=True)\nnotify('READY=1')\nsignal.pause()",
                 readiness={"notify": True})
    sup = h.supervise([d])
    sup.set_log_dir(logs)
    h.wait_state("talker", "ready")

    def open_in_logs() -> list[str]:
        fds = Path("/proc/self/fd")
        targets = []
        for fd in fds.iterdir():
            try:
                targets.append(os.readlink(fd))
            except OSError:
                pass
        return [t for t in targets if t.startswith(str(logs))]

    assert open_in_logs(), "the log file was never opened"
    done = []
    sup.stop_all(on_done=lambda: done.append(True))
    h.wait(lambda: done)
    assert open_in_logs() == []
    h.sup = None
    sup.close()
