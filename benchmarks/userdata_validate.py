"""Print how long the userdata service takes to start and to validate configs, and its memory.

Run: .venv/bin/python benchmarks/userdata_validate.py
Figures only; nothing is asserted.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best_of(n: int, fn) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def big_config(interfaces: int) -> bytes:
    text = (ROOT / "configs/worker.yaml").read_text()
    block = "".join(
        f"            - interface: eth{i}\n"
        f"              addresses: [10.{i // 250}.{i % 250}.2/24]\n"
        f"              routes: [{{network: 172.{16 + i % 8}.0.0/16, gateway: 10.{i // 250}.{i % 250}.1}}]\n"
        f"              vlans: [{{vlanId: {1 + i % 4000}, dhcp: true}}]\n"
        for i in range(interfaces)
    )
    return text.replace("        interfaces:\n", "        interfaces:\n" + block, 1).encode()


def main() -> None:
    from talos_init.userdata import validate

    for name in ("worker.yaml", "controlplane.yaml"):
        data = (ROOT / "configs" / name).read_bytes()
        t = best_of(20, lambda data=data: validate.parse(data))
        print(f"validate configs/{name:<18} {len(data):>7} bytes  {t * 1000:7.2f} ms")
    for n in (100, 1000):
        data = big_config(n)
        assert validate.parse(data).ok
        t = best_of(3, lambda data=data: validate.parse(data))
        tracemalloc.start()
        validate.parse(data)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(
            f"validate {n:>4} interfaces       {len(data):>7} bytes  {t * 1000:7.2f} ms  peak {peak / 2**20:.1f} MiB"
        )
    code = "import talos_init.userdata.__main__"
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", code], check=True)
        runs.append(time.perf_counter() - t)
    print(
        f"start python -I + import the service: best {min(runs) * 1000:.0f} ms of 5 (host, not TCG)"
    )
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the forked parent.
    probe = (
        code
        + "; print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe], check=True, capture_output=True, text=True
    )
    print(f"service process peak RSS after imports: {int(out.stdout) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
