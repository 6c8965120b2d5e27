"""Print what an image import costs: throughput and memory against a real containerd.

    .venv/bin/python benchmarks/image_import.py [--sizes 10,100] [--runs 3]

Figures only, never asserted. For each layer size (MiB of random bytes, so
gzip gains nothing and the layer is stored as-is), ``--runs`` fresh imports
(new bytes each time) and as many re-imports of the last archive (every blob
already there): median and range of MiB/s (archive bytes over wall time, unpack
included) and the Python heap peak (tracemalloc). containerd is the host's, started
on a scratch root.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talos_init.containerd import grpc  # noqa: E402
from talos_init.containerd.images import Importer  # noqa: E402
from tests.host.apid.conftest import CONFIG  # noqa: E402
from tests.ociimage import HELLO_C, compile_static, members, tar_bytes  # noqa: E402


def start_containerd(d: Path) -> subprocess.Popen[bytes]:
    (d / "config.toml").write_text(CONFIG.format(d=d))
    with open(d / "log", "wb") as log:
        proc = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=log,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not (d / "containerd.sock").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"containerd did not start:\n{(d / 'log').read_text()}")
        time.sleep(0.05)
    return proc


def measure(imp: Importer, archive: bytes) -> tuple[float, float]:
    tracemalloc.start()
    t0 = time.monotonic()
    imp.import_archive(io.BytesIO(archive))
    elapsed = time.monotonic() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return len(archive) / 2**20 / elapsed, peak / 2**20


def show(label: str, figures: list[tuple[float, float]]) -> None:
    rates = [r for r, _ in figures]
    print(f"  {label:10} {statistics.median(rates):7.1f} MiB/s [{min(rates):.1f}-{max(rates):.1f}]"
          f"  heap peak {max(p for _, p in figures):.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100", help="layer sizes in MiB, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="ctd-bench-", dir="/tmp"))
    proc = start_containerd(d)
    try:
        binary = compile_static(HELLO_C, d / "hello").read_bytes()
        imp = Importer(grpc.Client(str(d / "containerd.sock"), timeout=600))
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"layer of {size} MiB (uncompressed random bytes), {args.runs} runs:")
            fresh, again = [], []
            for run in range(args.runs):
                archive = tar_bytes(members(f"bench.local/img{size}:{run}", binary, compress=False,
                                            extra={"data": os.urandom(size << 20)}))
                fresh.append(measure(imp, archive))
            for _ in range(args.runs):
                again.append(measure(imp, archive))
            show("import", fresh)
            show("re-import", again)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
