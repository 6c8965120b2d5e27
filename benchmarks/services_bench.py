"""Service supervisor figures (printed, never asserted): restart latency and idle cost.

Run as root from the worktree: ``.venv/bin/python -m benchmarks.services_bench [--idle 10]``.

- start: 20 notify services from ``start()`` to all ready.
- restart latency: crash -> running again, split into the backoff delay the
  policy chose and the supervisor's own overhead (reap, decide, fork, exec).
- idle: PID-1-side CPU time and loop wake-ups while 20 ready services idle.
  With no probe in any definition the loop must not wake at all.
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

from talos_init.events import EventLog
from talos_init.loop import Loop
from talos_init.paths import Paths
from talos_init.reaper import Reaper
from talos_init.service.definition import parse
from talos_init.service.supervisor import Supervisor

IDLE = """
from talos_init.sdnotify import notify
import signal
notify("READY=1")
signal.pause()
"""
CRASH = """
from talos_init.sdnotify import notify
import sys, time
notify("READY=1")
time.sleep(0.05)
sys.exit(1)
"""


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def setup(tmp: Path, definitions: list) -> tuple[Loop, EventLog, Supervisor]:
    loop = Loop()
    events = EventLog(limit=100_000)
    paths = Paths(tmp / "root")
    paths.run.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(loop, Reaper(loop), events, definitions, paths, cgroup_root=None)
    return loop, events, sup


def define(tmp: Path, sid: str, code: str, **fields):
    script = tmp / f"{sid}.py"
    script.write_text(textwrap.dedent(code))
    d, errors = parse({"id": sid, "argv": [sys.executable, str(script)], **fields})
    assert not errors, errors
    return d


def teardown(loop: Loop, sup: Supervisor) -> None:
    done: list[bool] = []
    sup.stop_all(loop.clock() + 10, lambda: done.append(True))
    loop.run_until(lambda: bool(done), timeout=15)
    loop.run_until(lambda: False, timeout=0.2)  # reap the last exits
    sup.close()
    loop.close()


PROBED = """
import signal, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
signal.pause()
"""


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_idle(tmp: Path, seconds: float, n: int = 20, probed: int = 0) -> None:
    defs = [define(tmp, f"idle{i:02d}", IDLE, readiness={"notify": True})
            for i in range(n - probed)]
    for i in range(probed):
        port = free_port()
        d = define(tmp, f"probed{i:02d}", PROBED,
                   readiness={"probe": {"tcp": f"127.0.0.1:{port}", "period": 1.0}})
        defs.append(replace(d, argv=(*d.argv, str(port))))
    loop, _, sup = setup(tmp, defs)
    t0 = time.monotonic()
    sup.start()
    loop.run_until(lambda: all(s["state"] == "ready" for s in sup.services()), timeout=60)
    started = time.monotonic() - t0
    label = f" ({probed} with a tcp probe every 1 s)" if probed else " (no probes)"
    print(f"start: {n} services{label} ready in {started * 1000:.0f} ms "
          f"(fork+exec of {n} Python interpreters on a shared 2-core VM)")
    loop.run_until(lambda: False, timeout=0.5)  # let late log lines settle
    w0, c0, t0 = loop.wakeups, cpu(), time.monotonic()
    loop.run_until(lambda: False, timeout=seconds)
    elapsed, wakeups, used = time.monotonic() - t0, loop.wakeups - w0, cpu() - c0
    print(f"idle{label}: {n} ready services for {elapsed:.1f} s: {wakeups} loop wake-ups "
          f"({wakeups / elapsed:.2f}/s; run_until's own deadline accounts for 1), "
          f"supervisor CPU {used * 1000:.1f} ms ({used / elapsed * 100:.3f}% of one core)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"memory: supervisor process max RSS {rss / 1024:.1f} MiB")
    teardown(loop, sup)


def bench_restart(tmp: Path, rounds: int) -> None:
    d = define(tmp, "crasher", CRASH, readiness={"notify": True}, restart="always",
               backoff={"initial": 0.1, "max": 0.1})
    loop, events, sup = setup(tmp, [d])
    sup.start()
    loop.run_until(lambda: sup.core.status["crasher"].restarts >= rounds, timeout=120)
    teardown(loop, sup)
    hist = events.history("service", "crasher")
    totals, delays = [], []
    for i, e in enumerate(hist):
        if e.state != "backoff":
            continue
        nxt = next((x for x in hist[i + 1:] if x.state == "running"), None)
        if nxt is not None:
            totals.append(nxt.t - e.t)
            delays.append(e.fields["delay"])
    overhead = [t - dl for t, dl in zip(totals, delays, strict=True)]
    print(f"restart latency over {len(totals)} crashes: exit seen -> running again "
          f"median {statistics.median(totals) * 1000:.1f} ms "
          f"(backoff delay chosen {statistics.median(delays) * 1000:.1f} ms with jitter; "
          f"supervisor overhead median {statistics.median(overhead) * 1000:.2f} ms, "
          f"max {max(overhead) * 1000:.2f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idling to measure")
    parser.add_argument("--restarts", type=int, default=20)
    args = parser.parse_args()
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # subreaper, as PID 1 would be
    from talos_init import log

    log.configure(level="error")
    with tempfile.TemporaryDirectory() as tmp:
        bench_idle(Path(tmp), args.idle)
    with tempfile.TemporaryDirectory() as tmp:
        bench_idle(Path(tmp), args.idle, probed=2)
    with tempfile.TemporaryDirectory() as tmp:
        bench_restart(Path(tmp), args.restarts)


if __name__ == "__main__":
    main()
