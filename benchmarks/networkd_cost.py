"""Print what networkd costs: import time, time to READY=1 and memory (RSS) once ready.

Run as root: ``.venv/bin/python benchmarks/networkd_cost.py``. It creates one
network namespace with a veth pair, starts networkd with a static ``ip=`` in
it, and removes everything afterwards. No traffic leaves the namespace.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def import_seconds(module: str, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(
            [PY, "-I", "-c", f"import {module}" if module else "pass"],
            check=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT)},
        )
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ready_and_rss() -> tuple[float, int, int]:
    ns = f"nwdbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(
            ["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "p0"],
            check=True,
        )
        subprocess.run(["ip", "-n", ns, "link", "set", "p0", "up"], check=True)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "proc").mkdir()
            (root / "proc/cmdline").write_text("ip=10.250.0.2::10.250.0.1:24:bench:eth0:off\n")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(root / "notify.sock"))
            sock.settimeout(60)
            env = {"PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(root / "notify.sock")}
            t = time.perf_counter()
            proc = subprocess.Popen(
                [
                    "unshare",
                    "--uts",
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    PY,
                    "-I",
                    "-m",
                    "talos_init.networkd",
                    "--root",
                    str(root),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                cwd=ROOT,
            )
            try:
                while "READY=1" not in sock.recv(4096).decode():
                    pass
                ready = time.perf_counter() - t
                status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                kb = {
                    line.split(":")[0]: int(line.split()[1])
                    for line in status
                    if line.startswith("Vm")
                }
                return ready, kb["VmRSS"], kb["VmHWM"]
            finally:
                proc.terminate()
                proc.wait(15)
                sock.close()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main() -> None:
    base = import_seconds("")
    print(f"interpreter start (python -I -c pass):     {base * 1000:7.1f} ms")
    for module in ("pyroute2", "talos_init.networkd.daemon"):
        print(f"import {module:<34} {(import_seconds(module) - base) * 1000:7.1f} ms over start")
    ready, rss, hwm = ready_and_rss()
    print(f"start to READY=1 (static ip=, one link):   {ready * 1000:7.1f} ms")
    print(
        f"RSS when ready:                            {rss / 1024:7.1f} MiB (peak {hwm / 1024:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
