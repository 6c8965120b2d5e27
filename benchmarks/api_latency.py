"""Print the API's costs: control-socket round trips in PID 1's Loop, apid calls over mutual TLS.

    .venv/bin/python benchmarks/api_latency.py [--calls 200]

Figures only, never asserted:
  - control socket: unary round trips per second against a ControlServer on a
    Loop in a thread, one connection, and the Loop's wake-ups per call;
  - apid: a real apid process on 127.0.0.1; time per `version` call (new TLS
    connection, handshake, call) and per `services` call (one more hop: PID 1),
    median and p95, and apid's RSS after the run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talos_init import log as talos_log  # noqa: E402
from talos_init import pki  # noqa: E402
from talos_init.control.server import ControlServer  # noqa: E402
from talos_init.osctl.client import Client, Context  # noqa: E402
from tests.host.apid.conftest import start_apid  # noqa: E402
from tests.host.control.conftest import LineClient, LoopThread  # noqa: E402


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    n = ap.parse_args().calls
    talos_log.configure(level="warning")  # one debug line per control connection would drown the figures
    tmp = Path(tempfile.mkdtemp(prefix="api-bench-"))
    lt = LoopThread()
    lt.thread.start()
    server = ControlServer(lt.loop, tmp / "init.sock")
    services = [{"id": f"svc{i}", "state": "ready", "pid": None} for i in range(8)]
    server.register("services.list", lambda p: services)
    lt.run(server.start)

    client = LineClient(server.path)
    wake0 = lt.loop.wakeups
    t0 = time.perf_counter()
    for i in range(n * 10):
        client.call("services.list", rid=i)
    dt = time.perf_counter() - t0
    wakes = (lt.loop.wakeups - wake0) / (n * 10)
    client.close()
    print(f"control socket: {n * 10 / dt:,.0f} round trips/s "
          f"({dt / (n * 10) * 1e6:.0f} us each), {wakes:.1f} loop wake-ups per call")

    ca, ca_key = pki.new_ca("bench")
    config = tmp / "config.json"
    config.write_text(json.dumps({"machine": {"ca": {
        "crt": pki.encode_field(pki.cert_pem(ca)), "key": pki.encode_field(pki.key_pem(ca_key))}}}))
    proc, host, port = start_apid(tmp, config, server.path)
    try:
        crt, key = pki.new_client_cert(ca, ca_key, "bench", ["os:reader"])
        api = Client(Context("bench", ca=pki.encode_field(pki.cert_pem(ca)),
                             crt=pki.encode_field(pki.cert_pem(crt)), key=pki.encode_field(pki.key_pem(key))))
        for method in ("version", "services"):
            times = []
            for _ in range(n):
                t = time.perf_counter()
                api.call(f"{host}:{port}", method)
                times.append(time.perf_counter() - t)
            print(f"apid {method:8}: median {statistics.median(times) * 1e3:.2f} ms, "
                  f"p95 {pct(times, 0.95) * 1e3:.2f} ms per call (new mTLS connection each)")
        api.close()
        rss = int(next(line.split()[1] for line in open(f"/proc/{proc.pid}/status")
                       if line.startswith("VmRSS")))
        print(f"apid RSS after {2 * n} calls: {rss / 1024:.1f} MiB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        lt.run(server.close)
        lt.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
