"""Confinement of real service processes: cgroup, OOM score, capabilities, no_new_privs."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from talos_init import log, record
from tests.host.service.conftest import alive


@pytest.fixture
def cgroup2():
    """A private cgroup2 hierarchy mounted in a temp dir (the host itself runs cgroup v1)."""
    mnt = Path(tempfile.mkdtemp(prefix="talos-cg2-"))
    subprocess.run(["mount", "-t", "cgroup2", "none", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        for d in sorted((p for p in mnt.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                d.rmdir()
            except OSError:
                pass
        subprocess.run(["umount", str(mnt)], check=True)
        mnt.rmdir()


def test_cgroup_holds_every_process_and_stop_kills_escaped_grandchild(harness, cgroup2):
    """A grandchild in its own session escapes the process group but not the cgroup."""
    h = harness
    pidfile = h.tmp / "escaped.pid"
    d = h.define("svc", f"""
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path({str(pidfile)!r}).write_text(str(os.getpid()))
    while True:
        time.sleep(1)
while not Path({str(pidfile)!r}).exists():
    time.sleep(0.02)
notify("READY=1")
while True:
    time.sleep(1)
""", readiness={"notify": True}, stop={"timeout": 0.3},
        confinement={"cgroup": "talos", "memory_max": "64Mi"})
    with log.capture() as logs:
        sup = h.supervise([d], cgroup_root=cgroup2)
        h.wait_state("svc", "ready")
    escaped = int(pidfile.read_text())
    main = sup.core.status["svc"].pid
    group = cgroup2 / "talos" / "svc"
    procs = {int(x) for x in (group / "cgroup.procs").read_text().split()}
    assert {main, escaped} <= procs
    assert os.getsid(escaped) == escaped != main
    # No memory controller on this host's cgroup2: a warning, and the service runs anyway.
    assert any(e["event"] == "cgroup_memory_max_unavailable" for e in logs)
    sup.stop_service("svc")
    h.wait_state("svc", "finished")
    h.wait(lambda: not alive(escaped), timeout=10)
    h.wait(lambda: not group.exists(), timeout=10)  # removed once empty


def test_notify_from_a_child_process_is_attributed_through_its_session(harness):
    """READY=1 sent by a helper child of the service counts for that service."""
    h = harness
    d = h.define("parent", """
if os.fork() == 0:
    notify("READY=1")
    os._exit(0)
signal.pause()
""", readiness={"notify": True})
    h.supervise([d])
    h.wait_state("parent", "ready")


def test_oom_score_caps_and_no_new_privs_apply_in_the_child(harness):
    """The child runs with its OOM score, rlimits, user, a reduced capability set and no_new_privs."""
    h = harness
    # Passed with -c: uid 65534 cannot read files under pytest's 0700 tmp dir.
    d = h.define("confined", """
print(open("/proc/self/oom_score_adj").read().strip(), flush=True)
for line in open("/proc/self/status"):
    if line.split(":")[0] in ("CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Uid", "Gid"):
        print(line.strip(), flush=True)
for line in open("/proc/self/limits"):
    if line.startswith("Max open files"):
        print("nofile:", *line.split()[3:5], flush=True)
""", readiness={"exit": True}, restart="never",
        confinement={"oom_score_adj": 500, "no_new_privs": True, "user": 65534, "group": 65534,
                     "capabilities": {"keep": ["net_bind_service"]}, "rlimits": {"nofile": 512}})
    d = record.replace(d, argv=(d.argv[0], "-I", "-c", Path(d.argv[1]).read_text()
                                .replace("from talos_init.sdnotify import notify", "")))
    sup = h.supervise([d])
    h.wait_state("confined", "finished")
    out = {line.split(":")[0]: line.split(":", 1)[-1].split() for line in sup.logs("confined")}
    assert sup.logs("confined")[0] == "500"  # raising needs no CAP_SYS_RESOURCE (absent here)
    assert out["NoNewPrivs"] == ["1"]
    assert out["nofile"] == ["512", "512"]
    assert out["Uid"][0] == "65534" and out["Gid"][0] == "65534"
    assert int(out["CapEff"][0], 16) == 1 << 10  # CAP_NET_BIND_SERVICE only
    assert int(out["CapBnd"][0], 16) == 1 << 10
    assert int(out["CapAmb"][0], 16) == 1 << 10


def test_spawn_failure_names_the_step(harness):
    """A missing working directory fails the start with a reason naming it."""
    h = harness
    d = h.define("lost", "pass", working_directory="/nonexistent-dir", restart="never")
    sup = h.supervise([d])
    h.wait_state("lost", "failed")
    assert sup.core.status["lost"].reason == \
        "cannot start: chdir /nonexistent-dir: No such file or directory"


def test_kill_mode_process_lets_a_daemons_children_outlive_its_restart(harness, cgroup2):
    """containerd's case: its shims (own session, same cgroup) survive a crash-restart and a stop."""
    h = harness
    pidfile, crashed = h.tmp / "shim.pid", h.tmp / "crashed"
    d = h.define("daemon", f"""
if not Path({str(pidfile)!r}).exists():
    if os.fork() == 0:
        os.setsid()
        Path({str(pidfile)!r}).write_text(str(os.getpid()))
        while True:
            time.sleep(1)
    while not Path({str(pidfile)!r}).exists():
        time.sleep(0.02)
notify("READY=1")
if not Path({str(crashed)!r}).exists():
    Path({str(crashed)!r}).touch()
    sys.exit(3)
while True:
    time.sleep(1)
""", readiness={"notify": True}, restart="always", stop={"timeout": 2, "kill_mode": "process"},
        confinement={"cgroup": "talos"})
    sup = h.supervise([d], cgroup_root=cgroup2)
    h.wait(lambda: crashed.exists() and h.state("daemon") == "ready" and len(h.times("daemon", "ready")) == 2)
    shim = int(pidfile.read_text())
    try:
        assert alive(shim), "the crash of the main process killed its child"
        procs = {int(x) for x in (cgroup2 / "talos" / "daemon" / "cgroup.procs").read_text().split()}
        assert {shim, sup.core.status["daemon"].pid} <= procs  # the restarted daemon joined it
        sup.stop_service("daemon")
        h.wait_state("daemon", "finished")
        h.idle(0.3)
        assert alive(shim), "stopping the main process killed its child"
    finally:
        os.kill(shim, 9)
        h.wait(lambda: not alive(shim), timeout=10)


def test_kill_mode_is_validated():
    from talos_init.service.definition import parse
    _d, errors = parse({"id": "x", "argv": ["/bin/true"], "stop": {"kill_mode": "mixed"}})
    assert any("stop.kill_mode" in str(e) for e in errors), errors


def _nice_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])  # field 19 of stat(5), after "pid (comm)"


def test_nice_applies_to_the_process_and_its_cgroup(harness, cgroup2):
    """confinement.nice is the running process's nice (absolute, below 0 too) and its cgroup's
    cpu.weight.nice; without a cpu controller the cgroup part is a warning and the service runs."""
    h = harness
    body = """
notify("READY=1")
while True:
    time.sleep(1)
"""
    first = h.define("first", body, readiness={"notify": True}, confinement={"nice": -7})
    later = h.define("later", body, readiness={"notify": True}, confinement={"nice": 12})
    plain = h.define("plain", body, readiness={"notify": True})
    with log.capture() as logs:
        sup = h.supervise([first, later, plain], cgroup_root=cgroup2)
        for sid in ("first", "later", "plain"):
            h.wait_state(sid, "ready")
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert _nice_of(sup.core.status["first"].pid) == -7
    assert _nice_of(sup.core.status["later"].pid) == 12
    assert _nice_of(sup.core.status["plain"].pid) == own  # no field: inherited, untouched
    controllers = (cgroup2 / "cgroup.controllers").read_text().split()
    if "cpu" in controllers:
        assert (cgroup2 / "system" / "first" / "cpu.weight.nice").read_text().strip() == "-7"
        assert (cgroup2 / "system" / "later" / "cpu.weight.nice").read_text().strip() == "12"
    else:  # this host: cpu is bound to the cgroup v1 hierarchy
        warned = [e for e in logs if e["event"] == "cgroup_cpu_weight_unavailable"]
        assert sorted(e["service"] for e in warned) == ["first", "later"]
    for sid in ("first", "later", "plain"):
        sup.stop_service(sid)
        h.wait_state(sid, "finished")


def test_nice_refused_names_the_step():
    """Without CAP_SYS_NICE a negative nice is refused before exec, and the reason says so."""
    script = """
from talos_init.service import caps
from talos_init.service.definition import CAPABILITIES, Confinement
from talos_init.service.spawn import SpawnError, SpawnRequest, spawn
eff = int(next(l for l in open("/proc/self/status") if l.startswith("CapEff")).split()[1], 16)
have = frozenset(n for n in CAPABILITIES.values() if eff >> n & 1)
caps.set_capabilities(have - {CAPABILITIES["sys_nice"]}, ambient=False)
try:
    spawn(SpawnRequest(["/bin/true"], {}, confinement=Confinement(nice=-5)))
except SpawnError as exc:
    print(exc.reason)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "nice -5: Permission denied", (out.stdout, out.stderr)


def test_a_top_level_group_gets_its_cpu_weight(harness, cgroup2):
    """The podruntime group (containerd's) weighs 400 where groups and PID 1 compete; system keeps
    the default. Without a cpu controller: a warning naming the group, and the service runs."""
    h = harness
    body = """
notify("READY=1")
while True:
    time.sleep(1)
"""
    runtime = h.define("runtime", body, readiness={"notify": True},
                       confinement={"cgroup": "podruntime"})
    plain = h.define("plain", body, readiness={"notify": True})
    with log.capture() as logs:
        sup = h.supervise([runtime, plain], cgroup_root=cgroup2)
        for sid in ("runtime", "plain"):
            h.wait_state(sid, "ready")
    pid = sup.core.status["runtime"].pid
    assert str(pid) in (cgroup2 / "podruntime" / "runtime" / "cgroup.procs").read_text().split()
    if "cpu" in (cgroup2 / "cgroup.controllers").read_text().split():
        assert (cgroup2 / "podruntime" / "cpu.weight").read_text().strip() == "400"
        assert (cgroup2 / "system" / "cpu.weight").read_text().strip() == "100"
    else:  # this host: cpu is bound to the cgroup v1 hierarchy
        warned = [e for e in logs if e["event"] == "cgroup_cpu_weight_unavailable"]
        assert [e.get("group") for e in warned] == ["podruntime"], warned
    for sid in ("runtime", "plain"):
        sup.stop_service(sid)
        h.wait_state(sid, "finished")


def test_root_enables_every_controller_the_kernel_offers(harness, cgroup2):
    """The kubelet's pods live at the root: every controller in the root's cgroup.controllers
    (cpuset and hugetlb too, not only the four a service group uses) is delegated below it."""
    offered = (cgroup2 / "cgroup.controllers").read_text().split()
    for name in offered:  # start from none delegated, so the test sees our write
        try:
            (cgroup2 / "cgroup.subtree_control").write_text(f"-{name}")
        except OSError:
            pass  # in use below the root by someone else: stays enabled
    h = harness
    svc = h.define("svc", 'notify("READY=1")\nwhile True:\n    time.sleep(1)\n',
                   readiness={"notify": True}, confinement={"cgroup": "talos"})
    sup = h.supervise([svc], cgroup_root=cgroup2)
    h.wait_state("svc", "ready")
    assert offered, "this host's cgroup2 root offers no controller at all"
    assert sorted((cgroup2 / "cgroup.subtree_control").read_text().split()) == sorted(offered)
    sup.stop_service("svc")
    h.wait_state("svc", "finished")
