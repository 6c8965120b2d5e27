"""Image variants compared without the service graph: each booted with the image probe as /init.

    .venv/bin/python -m benchmarks.probe_bench [--boots 3] NAME=BUILD_DIR [NAME=BUILD_DIR ...]

Each BUILD_DIR is an ``initramfs.build --out`` directory (e.g. built with a
``--recipe`` whose [squashfs] compression or image compression differs). The
probe (tests/e2e/probe/init) mounts the payload with PID 1's own code, then
starts udevd and containerd one after the other, so containerd's start-up is
not mixed with Python daemons competing for the CPUs, and reports how much
of its binary containerd touched on the way (file-backed Rss). Boots alternate between
the variants (QEMU TCG unless TALOS_QEMU_ACCEL=kvm). Prints median
[min-max] of: the kernel's initramfs unpack, kernel start -> /init, the
payload mount (modules + loop + mount), containerd start to READY=1, and
the image size. Figures only, never asserted.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

# Run as a file (python benchmarks/...py) too: the repository's packages on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.overlay import with_files  # noqa: E402
from tests.e2e.qemu import VM, VMError, VMSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "e2e" / "probe" / "init"
TS = r"^\[\s*(\d+\.\d+)\]"

ROWS = [("initramfs unpack (kernel)", "unpack"), ("kernel start -> /init", "exec"),
        ("payload mount (PID 1 code)", "payload"), ("containerd start -> READY=1", "containerd"),
        ("probe /init -> done", "done"), ("containerd file-backed Rss (MiB)", "rss_file")]


def parse(console: str) -> dict[str, float]:
    out: dict[str, float] = {}
    patterns = {"unpack_start": TS + r".*Trying to unpack rootfs", "unpack_done": TS + r".*Freeing initrd memory",
                "exec": TS + r".*Run /init as init process", "payload": r"^PROBE payload mounted (\d+\.\d+)s",
                "containerd": r"^PROBE containerd ready (\d+\.\d+)s", "done": r"^PROBE done (\d+\.\d+)s",
                "rss_file": r"^PROBE containerd-rss file=(\d+)kB"}
    for key, pattern in patterns.items():
        m = re.search(pattern, console, re.MULTILINE)
        if m:
            out[key] = float(m.group(1))
    if "rss_file" in out:
        out["rss_file"] /= 1024
    if "unpack_start" in out and "unpack_done" in out:
        out["unpack"] = out["unpack_done"] - out["unpack_start"]
    return out


def one_boot(kernel: Path, initrd: Path, workdir: Path, timeout: float) -> dict[str, float]:
    # loglevel=7: the kernel's unpack records (KERN_INFO) reach the console.
    vm = VM(VMSpec(kernel, initrd, workdir, cmdline=["loglevel=7"], disk_mb=0))
    try:
        vm.start()
        try:
            vm.wait_for(r"^PROBE (done|error)", timeout)
            vm.wait_exit(120)
        except VMError as e:
            print(f"    boot failed: {e} (console: {vm.log_path})", file=sys.stderr, flush=True)
    finally:
        vm.close()
    return parse(vm.console)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe_bench",
                                     description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", metavar="NAME=BUILD_DIR")
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="probe-bench-"))
    variants = {}
    for spec in args.variants:
        name, _, build = spec.partition("=")
        build = Path(build)
        initrd = with_files(build / "initramfs.img", work / f"{name}.img", {"/init": (PROBE.read_bytes(), 0o755)})
        variants[name] = (build / "vmlinuz", initrd, (build / "initramfs.img").stat().st_size)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(args.boots):
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotate the order each round
            kernel, initrd, _ = variants[name]
            r = one_boot(kernel, initrd, work / f"{i:02d}-{name}", args.timeout)
            runs[name].append(r)
            print(f"  boot {i + 1}/{args.boots} {name:12} unpack {r.get('unpack', float('nan')):.2f}s "
                  f"/init {r.get('exec', float('nan')):.2f}s containerd {r.get('containerd', float('nan')):.2f}s",
                  flush=True)
    print(f"\nmedian [min-max] over {args.boots} boots each (guest seconds; QEMU TCG unless KVM asked)")
    print(f"  {'':30}" + "".join(f"{n:>24}" for n in names))
    for label, key in ROWS:
        cells = []
        for n in names:
            values = [r[key] for r in runs[n] if key in r]
            cells.append(f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"
                         if values else "n/a")
        print(f"  {label:30}" + "".join(f"{c:>24}" for c in cells))
    print(f"  {'image size (MiB)':30}" + "".join(f"{variants[n][2] / 2**20:>24.2f}" for n in names))
    return 0 if all(len(r) == args.boots and all("containerd" in x for x in r) for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
