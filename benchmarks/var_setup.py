"""Figures for the var service on a real loop device: first boot (partition + mkfs) and a
later boot (e2fsck -p + mount), wall time and peak memory of the service process.

    sudo .venv/bin/python benchmarks/var_setup.py [--size-gib 4]

Prints figures; asserts nothing. Needs root (loop devices, mount).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_service(tmp: Path, disk: str) -> tuple[float, float, str]:
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps({"machine": {"install": {"disk": disk}}}))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-I", "-m", "talos_init.disk", "--machine-config", str(cfg),
                        "--var", str(tmp / "var"), "--etc", str(tmp / "etc"),
                        "--report", str(tmp / "var.json"), "--no-drivers",
                        # the second boot finds its EPHEMERAL on this loop disk, not the host's
                        "--disks", Path(disk).name],
                       cwd=REPO, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if r.returncode != 0:
        sys.exit(f"var service failed: {r.stdout}{r.stderr}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.loads((tmp / "var.json").read_text())
    return elapsed, max(rss, before) / 1024, f"{report['action']} ({report['found_by']})"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size-gib", type=int, default=4)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="var-bench-") as d:
        tmp = Path(d)
        img = tmp / "disk.img"
        with open(img, "wb") as f:
            f.truncate(args.size_gib << 30)
        dev = subprocess.run(["losetup", "-f", "--show", "-P", str(img)], check=True,
                             capture_output=True, text=True).stdout.strip()
        try:
            for boot in ("first boot", "second boot"):
                elapsed, rss, action = run_service(tmp, dev)
                print(f"{boot:12s} {action:20s} {elapsed * 1000:8.0f} ms   "
                      f"peak RSS of the largest child so far {rss:6.1f} MiB")
                subprocess.run(["umount", str(tmp / "var")], check=True)
        finally:
            subprocess.run(["losetup", "-d", dev], check=False)
    print(f"disk: {args.size_gib} GiB sparse file on {tempfile.gettempdir()} (loop device)")


if __name__ == "__main__":
    main()
