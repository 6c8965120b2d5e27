"""Figures for the image: size by component, and the boot timeline over several boots.

    .venv/bin/python -m benchmarks.image_report [--boots 5] [--no-boot]

Size: raw bytes per component from build/manifest.txt, and what each
component costs compressed (zstd at the image's level, compressed alone, so
the column does not add up exactly to the image). Components in the payload
squashfs are marked: the kernel does not unpack them, and their bytes in the
image are the ``squashfs`` row. Boot: QEMU boots of the
real image (TCG unless TALOS_QEMU_ACCEL=kvm) with a config served on
loopback; each milestone is read from PID 1's console lines (guest
monotonic time, i.e. seconds since the kernel started), then the ACPI power
button is pressed and the time to QEMU's exit is measured on the host.
Printed, never asserted.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# Run as a file (python benchmarks/...py) too: the repository's packages on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from initramfs.build import ensure_built, load_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TS = r"^\[\s*(\d+\.\d+)\]"
MILESTONES = [
    ("python started", r"init: phase name=init state=start .*python_started=(\d+\.\d+)", "field"),
    ("mounts done", TS + r".*init: phase name=mounts state=done", "ts"),
    ("services started", TS + r".*init: phase name=services state=start", "ts"),
    ("udevd ready", TS + r".*service_state service=udevd state=ready", "ts"),
    ("devices settled", TS + r".*service_state service=udev-trigger state=finished", "ts"),
    ("network up", TS + r".*service_state service=networkd state=ready", "ts"),
    ("userdata loaded", TS + r".*service_state service=userdata state=finished", "ts"),
    ("containerd ready", TS + r".*service_state service=containerd state=ready", "ts"),
    ("kubelet ready (or skipped)", TS + r".*service_state service=kubelet state=(?:ready|skipped)", "ts"),
]


def size_report(build: Path) -> None:
    sizes: dict[str, int] = defaultdict(int)
    lazy: dict[str, int] = defaultdict(int)  # in the payload squashfs: mounted, not unpacked
    files: dict[str, list[Path]] = defaultdict(list)
    staging = build / "staging"
    recipe = load_recipe()
    below = recipe["squashfs"]["mountpoint"] + "/"
    for line in (build / "manifest.txt").read_text().splitlines():
        kind, _mode, size, _digest, component, path = line.split()[:6]
        sizes[component] += int(size)
        if path.startswith(below):
            lazy[component] += int(size)
        if kind == "f" and (staging / path.lstrip("/")).is_file():
            files[component].append(staging / path.lstrip("/"))
    level = recipe["image"]["zstd_level"]
    image = (build / "initramfs.img").stat().st_size
    unpacked = sum(sizes.values()) - sum(lazy.values())
    print(f"image {build / 'initramfs.img'}: {image / 2**20:.2f} MiB (zstd -{level}); the kernel unpacks "
          f"{unpacked / 2**20:.2f} MiB, the payload squashfs holds {sum(lazy.values()) / 2**20:.2f} MiB "
          f"more (read on demand)")
    print(f"{'component':18} {'raw MiB':>8} {'zstd MiB':>9} {'share':>6}  where")
    for component, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        data = b"".join(p.read_bytes() for p in sorted(files[component]))
        packed = len(subprocess.run(["zstd", f"-{level}", "-T0", "-q", "-c"], input=data,
                                    capture_output=True, check=True).stdout) if data else 0
        where = "squashfs" if lazy[component] else ""
        # A squashfs component's share is in the squashfs row (its own compression), not zstd's.
        share = f"{100 * packed / image:5.1f}%" if not where else "     -"
        print(f"{component:18} {size / 2**20:8.2f} {packed / 2**20:9.2f} {share}  {where}")


def one_boot(build: Path, config: bytes, timeout: float) -> dict[str, float]:
    from tests.e2e.conftest import UserdataServer, _serve
    from tests.e2e.qemu import VM, VMError, VMSpec

    state = UserdataServer(body=config)
    server = _serve(state)
    workdir = Path(tempfile.mkdtemp(prefix="talos-bench-"))
    vm = VM(VMSpec(build / "vmlinuz", build / "initramfs.img", workdir,
                   cmdline=[f"talos.config={state.guest_url}"], config_port=state.port))
    figures: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        vm.start()
        try:
            vm.wait_for(r"service_state service=containerd state=ready", timeout)
        except VMError as e:
            print(f"  boot: {e}", file=sys.stderr)
        figures["host: start to containerd ready"] = time.monotonic() - t0
        # A press before PID 1 listens is lost; QEMU's button is the second KEY_POWER device.
        vm.wait_for(r"power_button_watched device=\S+(?s:.*)power_button_watched device=", timeout)
        press = time.monotonic()
        vm.powerdown()
        vm.wait_exit(120)
        figures["host: power button to QEMU exit"] = time.monotonic() - press
    finally:
        vm.close()
        server.shutdown()
        server.server_close()
    console = vm.console
    for name, pattern, _kind in MILESTONES:
        m = re.search(pattern, console, re.MULTILINE)
        if m:
            figures[name] = float(m.group(1))
    return figures


def boot_report(build: Path, boots: int, timeout: float) -> None:
    config_path = REPO / "configs" / "worker.yaml"
    config = config_path.read_bytes() if config_path.exists() else b"version: v1alpha1\n"
    runs = []
    for i in range(boots):
        figures = one_boot(build, config, timeout)
        runs.append(figures)
        print(f"  boot {i + 1}/{boots}: containerd ready at "
              f"{figures.get('containerd ready', float('nan')):.2f}s guest time", flush=True)
    print(f"boot timeline, {boots} boots (guest seconds since kernel start; median [min-max])")
    for name in [m[0] for m in MILESTONES] + ["host: start to containerd ready",
                                             "host: power button to QEMU exit"]:
        values = [r[name] for r in runs if name in r]
        if not values:
            print(f"  {name:34} not reached")
            continue
        print(f"  {name:34} {statistics.median(values):7.2f}  [{min(values):.2f}-{max(values):.2f}]"
              + (f"  ({len(values)}/{boots} boots)" if len(values) < boots else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=REPO / "build")
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--no-boot", action="store_true")
    args = parser.parse_args()
    ensure_built(args.build)
    size_report(args.build)
    if not args.no_boot:
        boot_report(args.build, args.boots, args.timeout)


if __name__ == "__main__":
    main()
