"""Print PID 1's start-up cost: import time and RSS, and RSS of a running host-mode init.

    .venv/bin/python benchmarks/pid1_footprint.py [--runs 5]

Figures only, never asserted. Three measurements, each in a fresh
``python -I`` (as the image runs it):
  - ``import talos_init.init`` and the supervisor: import time, peak RSS, the
    number of modules, and whether asyncio, ssl, yaml or logging came along
    (none should: PID 1 uses none of them);
  - a running init in host mode (``-m talos_init --subreaper``), idle after
    boot: VmRSS from /proc, and the number of modules it loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = """
import resource, sys, time
t0 = time.perf_counter()
import talos_init.init, talos_init.service.supervisor
dt = time.perf_counter() - t0
print({"import_s": dt, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
       "modules": len(sys.modules),
       "unwanted": sorted(m for m in ("asyncio", "ssl", "yaml", "logging", "structlog")
                          if m in sys.modules)})
"""


def probe(runs: int) -> dict:
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-I", "-c", PROBE], capture_output=True, text=True,
                             check=True)
        results.append(eval(out.stdout))  # our own probe's dict literal
    imports = [r["import_s"] * 1000 for r in results]
    rss = [r["maxrss_kib"] / 1024 for r in results]
    return {
        "import_ms": f"{statistics.median(imports):.1f} [{min(imports):.1f}-{max(imports):.1f}]",
        "maxrss_mib": f"{statistics.median(rss):.1f} [{min(rss):.1f}-{max(rss):.1f}]",
        "modules": results[0]["modules"], "unwanted": results[0]["unwanted"],
    }


def running_init() -> dict:
    with tempfile.TemporaryDirectory() as root:
        Path(root, "cmdline").write_text("talos.hostname=bench\n")
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "talos_init", "--root", root, "--subreaper", "--json",
             "--cmdline", f"{root}/cmdline"], stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        booted = None
        for line in proc.stderr:
            event = json.loads(line)
            if event.get("name") == "services" and event.get("state") in ("done", "failed"):
                booted = time.monotonic() - t0
                break
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        proc.send_signal(signal.SIGTERM)
        proc.stderr.read()
        proc.wait(timeout=60)
    return {"exec_to_booted_ms": round((booted or 0) * 1000, 1),
            "idle_vmrss_mib": round(rss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"python: {sys.executable} {sys.version.split()[0]}, runs: {args.runs}, "
          f"cpus: {os.cpu_count()}")
    print("import talos_init.init + supervisor:", probe(args.runs))
    print("python -I -m talos_init (host mode): ", running_init())


if __name__ == "__main__":
    main()
