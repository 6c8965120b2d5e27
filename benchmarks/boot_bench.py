"""Boot benchmark: our Python PID 1 against a busybox shell-init baseline, side by side.

    .venv/bin/python -m benchmarks.boot_bench [--boots 5] [--idle 600] [--out build/bench]
                                              [--no-steady] [--no-prealloc]

The baseline needs ``busybox-static`` (tools/apt-packages.txt; see
benchmarks/baseline/build.py). Builds both images from the same kernel,
modules and containerd (ours with ``initramfs.build``, the baseline with
``benchmarks.baseline.build``), then boots them ALTERNATELY (the first image
of each round alternates too, so drift in the shared machine's load hits
both) in QEMU with identical settings: TCG unless TALOS_QEMU_ACCEL=kvm, the
same memory, cpus and blank virtio disk, ``-netdev user,restrict=on`` with
guestfwd to one loopback HTTP server serving configs/worker.yaml (with the
machine CA ``make run`` generates when the file has none, so apid starts), and the
guest RAM preallocated (``-mem-prealloc``; ``--no-prealloc`` leaves it to be
faulted in on the host as the guest first touches it, which under nested
virtualization costs the guest 0.2-0.35 s of its boot, more for the image
that touches more memory early: docs/for-devs/performance.md, run 13).

Ours is measured three ways: a first boot (blank disk: /var is partitioned once the
config names install.disk), the steady state (every later boot: a copy of a
disk installed by one unmeasured install boot, powered off cleanly, so /var is
found by its label without the config, and the config is read from the disk's
STATE partition before the URL), and the same installed disk with the config
server gone (talos.config= points at a closed port: the stored config is all
there is). The baseline has no persistent /var: its boots are the same in all.

Times are guest seconds since the kernel started: /init's exec from the
kernel's "Run /init as init process" record (both images); ours from PID
1's recorded events (the ``timeline`` control call, read by a benchmark-only
probe service added as a second cpio), the baseline from its ``BENCH mark``
lines (/proc/uptime). Memory: /proc/1/smaps_rollup after boot and after
``--idle`` seconds (on the first ``--idle-boots`` boots of each image);
wake-ups: PID 1's context switches and schedstat run count over that idle
window. Prints median [min-max] per image and the ratio ours/baseline;
writes the raw results (results.json) and the boot timelines as SVG charts
into ``--out``. Figures only, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import py_compile
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

# Run as a file (python benchmarks/...py) too: the repository's packages on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from initramfs.build import ensure_built, load_recipe  # noqa: E402
from talos_init.osctl import timeline_svg  # noqa: E402
from tests.e2e.conftest import UserdataServer, _serve  # noqa: E402
from tests.e2e.overlay import with_files  # noqa: E402
from tests.e2e.qemu import VM, VMError, VMSpec  # noqa: E402
from tests.e2e.run_node import config_for_node  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PROBE = HERE / "probe"
# The node's own helper daemons (PID 1 + these = "our processes"); containerd and udevd are not ours.
OWN_DAEMONS = ("talos_init",)

TIME_ROWS = [
    ("kernel start -> /init", "exec"),
    ("initramfs unpack (kernel)", "unpack"),
    ("/init -> config loaded", "init_to_config"),
    ("/init -> containerd ready", "init_to_containerd"),
    ("kernel start -> containerd ready", "containerd"),
    ("host: QEMU start -> containerd ready", "host_containerd"),
]


# ---- images ----------------------------------------------------------------------------

def baseline_digest() -> str:
    h = hashlib.sha256()
    for f in sorted((HERE / "baseline").iterdir()):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    h.update((REPO / "initramfs" / "recipe.toml").read_bytes())
    for f in [*sorted((REPO / "initramfs").glob("*.py")), REPO / "configs/containerd/config.toml"]:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build_images(build: Path, out: Path, uncompressed: bool = False) -> tuple[Path, Path]:
    """(our image with the probe overlay, the baseline image); each rebuilt only when its inputs changed."""
    print(f"build: ours in {build} (cached while its inputs are unchanged)", flush=True)
    ours = ensure_built(build, quiet=True)
    base_dir = build / "baseline"
    stamp = base_dir / "input-digest"
    digest = baseline_digest()
    if not (stamp.exists() and stamp.read_text() == digest and (base_dir / "initramfs.img").exists()):
        from benchmarks.baseline import build as baseline

        print(f"build: baseline in {base_dir}", flush=True)
        debs = sorted((build / "cache" / "kernel").glob("linux-image-*.deb"))
        baseline.build(base_dir, debs[-1] if debs else None)
        stamp.write_text(digest)
    # The probe starts with containerd, then waits for the config and apid itself (naming what fails).
    after = ["containerd"]
    text = (PROBE / "bench-probe.yaml").read_text().replace("DEPENDS_ON", json.dumps(after))
    # As JSON, like the product's definitions: a YAML file would make PID 1 import yaml.
    probe_def = json.dumps(yaml.safe_load(text)).encode()
    base = base_dir / "initramfs.img"
    if uncompressed:  # the lever under test: no decompression in the kernel, a bigger file to load
        ours = decompress(ours, out / "initramfs-raw.img")
        base = decompress(base, out / "baseline-raw.img")
    files = {
        "/usr/lib/talos/bench/bench_probe.py": ((PROBE / "bench_probe.py").read_bytes(), 0o644),
        "/usr/lib/talos/services/bench-probe.json": (probe_def, 0o644),
    }
    files.update(stopgaps(build / "manifest.txt", out))
    probed = with_files(ours, out / "initramfs-probe.img", files)
    return probed, base


# Stdlib modules the node needs but some image builds missed (imported by name, invisible to
# tracing). Added to the benchmark's copy only, with a warning, so the boot can be measured to the
# end; the fix belongs in initramfs/recipe.toml (extra_stdlib).
STOPGAP_STDLIB = ("encodings.utf_8_sig",)


def stopgaps(manifest: Path, out: Path) -> dict[str, tuple[bytes, int]]:
    listed = manifest.read_text()
    files = {}
    for module in STOPGAP_STDLIB:
        rel = module.replace(".", "/")
        if f"/usr/lib/python3.11/{rel}.pyc" in listed:
            continue
        print(f"build: WARNING the image lacks {module} (userdata needs it); the benchmark adds it "
              f"to its copy: add it to extra_stdlib in initramfs/recipe.toml", flush=True)
        cfile = out / f"{module}.pyc"
        py_compile.compile(f"/usr/lib/python3.11/{rel}.py", cfile=str(cfile),
                           dfile=f"/usr/lib/python3.11/{rel}.py", doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        files[f"/usr/lib/python3.11/{rel}.pyc"] = (cfile.read_bytes(), 0o644)
    return files


def decompress(image: Path, out: Path) -> Path:
    with open(out, "wb") as f:
        subprocess.run(["zstd", "-d", "-q", "-c", str(image)], stdout=f, check=True)
    return out


def manifest_bytes(manifest: Path) -> int:
    """What the kernel unpacks: every file but the payload squashfs's content (mounted, read lazily)."""
    below = load_recipe()["squashfs"]["mountpoint"] + "/"
    return sum(int(line.split()[2]) for line in manifest.read_text().splitlines()
               if line.startswith("f ") and not line.split()[5].startswith(below))


# ---- one boot ------------------------------------------------------------------------------

def one_boot(kind: str, n: int, kernel: Path, initrd: Path, config: bytes, idle: float,
             importtime: bool, args: argparse.Namespace, disk: Path | None = None,
             keep_disk: Path | None = None) -> dict:
    """One boot; ``disk``: boot a copy of this installed disk; ``keep_disk``: power off
    cleanly at the end and keep the disk there (the install boot)."""
    state = UserdataServer(body=config)
    server = _serve(state)
    if kind == STORED:  # the server is gone: the guest's talos.config= reaches a closed port
        server.shutdown()
        server.server_close()
    workdir = args.out / "boots" / f"{n:02d}-{kind}"  # the serial log stays there for reading
    workdir.mkdir(parents=True, exist_ok=True)
    cmdline = [f"talos.config={state.guest_url}", f"bench.idle={idle:g}"]
    if importtime:
        cmdline.append("bench.importtime=1")
    copy = None
    if disk is not None:
        copy = workdir / "installed.raw"
        subprocess.run(["cp", "--sparse=always", str(disk), str(copy)], check=True)
    vm = VM(VMSpec(kernel, initrd, workdir, cmdline=cmdline, config_port=state.port,
                   memory_mb=args.memory, cpus=args.cpus, disk=copy,
                   prealloc=args.prealloc))
    ready = (r"service_state service=containerd state=ready" if kind.startswith("ours")
             else r"^BENCH mark containerd")
    result: dict = {"kind": kind, "idle": idle, "serial": str(vm.log_path)}
    try:
        t0 = time.monotonic()
        vm.start()
        try:
            vm.wait_for(ready, args.timeout)
            result["host_containerd"] = time.monotonic() - t0
            vm.wait_for(r"^BENCH done", args.timeout + idle + (900 if importtime else 0))
            if keep_disk is not None:
                since = len(vm.console)
                vm.powerdown()
                vm.wait_exit(300)
                if not re.search(r"unmount target=/var status=unmounted", vm.console[since:]):
                    raise VMError("the install boot did not unmount /var cleanly")
                os.replace(vm.disk_path, keep_disk)
        except VMError as e:
            result["error"] = str(e)
            print(f"    {kind}: {e} (console: {vm.log_path})", file=sys.stderr, flush=True)
    finally:
        vm.close()
        if kind != STORED:
            server.shutdown()
            server.server_close()
        (workdir / "data.raw").unlink(missing_ok=True)
        if copy is not None:
            copy.unlink(missing_ok=True)
    result.update(parse_console(kind, vm.console, idle))

    return result


def _kv(words: list[str]) -> dict[str, float]:
    out = {}
    for w in words:
        k, _, v = w.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def parse_console(kind: str, console: str, idle: float = 0) -> dict:
    r: dict = {"idle": idle, "events": [], "procs": {"boot": [], "idle": []}, "pid1": {}, "marks": {},
               "importtime": []}
    for m in re.finditer(r"^BENCH (\S+) ?(.*)$", console, re.MULTILINE):
        what, rest = m.group(1), m.group(2).strip()
        try:
            if what == "event":
                r["events"].append(json.loads(rest))
            elif what == "proc":
                label, _, row = rest.partition(" ")
                r["procs"][label].append(json.loads(row))
            elif what == "pid1":
                label, *words = rest.split()
                r["pid1"][label] = _kv(words)
            elif what == "mark":
                name, value = rest.split()
                r["marks"][name] = float(value)
            elif what == "kmsg":
                km = re.match(r"\[\s*(\d+\.\d+)\]\s*(.*)", rest)
                if km:
                    t, msg = float(km.group(1)), km.group(2)
                    key = ("unpack_start" if "Trying to unpack" in msg else
                           "unpack_done" if "Freeing initrd" in msg else "exec")
                    r["marks"].setdefault(key, t)
            elif what == "var":
                r["var_found_by"] = json.loads(rest).get("found_by")
            elif what == "settled":
                r["settled"] = rest
            elif what in ("log", "warn", "stopped", "quiet"):
                r.setdefault("guest_logs", []).append(f"{what} {rest}"[:300])
            elif what == "startup":
                flags, words = rest.split(" ", 1)
                r.setdefault("startup", {})[flags] = _kv(words.split())["wall_s"]
            elif what == "importtime":
                module, *words = rest.split(" ")
                r["importtime"].append({"module": module, **_kv(words[:-1]),
                                        "top": json.loads(words[-1])})
        except (ValueError, KeyError, IndexError):
            r.setdefault("unparsed", []).append(m.group(0)[:200])
    marks = r["marks"]
    if kind.startswith("ours"):
        for e in r["events"]:
            if e.get("kind") == "service" and e.get("name") == "userdata" and e.get("state") == "finished":
                marks.setdefault("config", e["t"])
            if e.get("kind") == "service" and e.get("name") == "containerd" and e.get("state") == "ready":
                marks.setdefault("containerd", e["t"])
            if e.get("kind") == "boot" and e.get("name") == "kernel_handoff":
                marks["python_started"] = e.get("python_started")
    exec_at = marks.get("exec")
    if exec_at is not None:
        if "config" in marks:
            r["init_to_config"] = marks["config"] - exec_at
        if "containerd" in marks:
            r["init_to_containerd"] = marks["containerd"] - exec_at
        r["exec"] = exec_at
    if "containerd" in marks:
        r["containerd"] = marks["containerd"]
    if "unpack_start" in marks and "unpack_done" in marks:
        r["unpack"] = marks["unpack_done"] - marks["unpack_start"]
    for label in ("boot", "idle"):
        p = r["pid1"].get(label)
        if p:
            r[f"pid1_rss_{label}"] = p.get("rss_kib", 0) / 1024
            r[f"pid1_pss_{label}"] = p.get("pss_kib", 0) / 1024
        own = [row for row in r["procs"][label]
               if row["pid"] == 1 or any(d in row["argv"] for d in OWN_DAEMONS)]
        if not own and p and kind == "baseline":  # the shell is all there is of the baseline's own
            own = [{"pid": 1, "argv": "/init (busybox sh)", "rss": p.get("rss_kib", 0),
                    "pss": p.get("pss_kib", 0)}]
        if own:
            r[f"own_rss_{label}"] = sum(row.get("rss", 0) for row in own) / 1024
            r[f"own_pss_{label}"] = sum(row.get("pss", 0) for row in own) / 1024
            r[f"own_{label}"] = [f"{row['pid']}:{row['argv'][:60]}" for row in own]
    boot, after = r["pid1"].get("boot"), r["pid1"].get("idle")
    if boot and after:
        minutes = (after["uptime"] - boot["uptime"]) / 60
        if r["idle"] > 0 and minutes > 0:
            ctx = (after["vctx"] + after["nvctx"]) - (boot["vctx"] + boot["nvctx"])
            r["wakeups_per_min"] = ctx / minutes
            r["runs_per_min"] = (after["runs"] - boot["runs"]) / minutes
            r["idle_minutes"] = minutes
    return r


# ---- report -----------------------------------------------------------------------------

def stat(values: list[float]) -> tuple[float, float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def fmt(s: tuple[float, float, float] | None, unit: str = "s", digits: int = 2) -> str:
    if s is None:
        return "n/a"
    return f"{s[0]:.{digits}f}{unit} [{s[1]:.{digits}f}-{s[2]:.{digits}f}]"


def row(label: str, ours: tuple | None, base: tuple | None, unit: str = "s", digits: int = 2) -> str:
    ratio = f"{ours[0] / base[0]:.2f}" if ours and base and base[0] else "n/a"
    return f"  {label:38} {fmt(ours, unit, digits):>26} {fmt(base, unit, digits):>26} {ratio:>7}"


STEADY = "ours-steady"  # ours booting a disk a first boot installed
STORED = "ours-stored"  # the same, with no config server at all


def report(runs: list[dict], sizes: dict[str, tuple[int, int]]) -> None:
    by = {k: [r for r in runs if r["kind"] == k] for k in ("ours", STEADY, STORED, "baseline")}
    n = {k: len(v) for k, v in by.items()}
    accel = os.environ.get("TALOS_QEMU_ACCEL", "tcg")
    tables = [("first boot: blank disk, /var made once the config names install.disk", "ours")]
    if by[STEADY]:
        tables.append(("steady state: a disk installed by a first boot, /var found by its "
                       "label, the config read from STATE (the baseline has no persistent /var: "
                       "same boots as above)", STEADY))
    if by[STORED]:
        tables.append(("installed disk, config server gone: the config from STATE only "
                       "(baseline: same boots as above)", STORED))
    for title, kind in tables:
        print(f"\n{title}\nmedian [min-max] over {n[kind]} boots of ours, {n['baseline']} of the "
              f"baseline; guest seconds since kernel start (QEMU {accel})")
        print(f"  {'':38} {'ours':>26} {'baseline':>26} {'ratio':>7}")
        for label, key in TIME_ROWS:
            print(row(label, stat([r.get(key) for r in by[kind]]),
                      stat([r.get(key) for r in by["baseline"]])))
        found = [r.get("var_found_by") for r in by[kind]]
        print(f"  /var of ours found by: {', '.join(str(f) for f in found)}")
    print("\nimage size (MiB)")
    ours_c, ours_u = sizes["ours"]
    base_c, base_u = sizes["baseline"]
    print(f"  {'compressed (zstd)':38} {ours_c / 2**20:26.2f} {base_c / 2**20:26.2f} "
          f"{ours_c / base_c:7.2f}")
    print(f"  {'unpacked by the kernel (files)':38} {ours_u / 2**20:26.2f} {base_u / 2**20:26.2f} {ours_u / base_u:7.2f}")
    print("\nPID 1 and our own processes, first boots of ours (MiB; wake-ups: PID 1 context switches per idle minute)")
    for label, key, unit, digits in [
        ("PID 1 Rss after boot", "pid1_rss_boot", "", 1), ("PID 1 Pss after boot", "pid1_pss_boot", "", 1),
        ("PID 1 Rss after idle", "pid1_rss_idle", "", 1), ("PID 1 Pss after idle", "pid1_pss_idle", "", 1),
        ("PID 1 wake-ups/min while idle", "wakeups_per_min", "", 2),
        ("PID 1 runs/min while idle (schedstat)", "runs_per_min", "", 2),
        ("own processes Rss after boot", "own_rss_boot", "", 1),
        ("own processes Pss after boot", "own_pss_boot", "", 1),
        ("own processes Pss after idle", "own_pss_idle", "", 1),
    ]:
        print(row(label, stat([r.get(key) for r in by["ours"]]),
                  stat([r.get(key) for r in by["baseline"]]), unit, digits))
    idle = [r for r in by["ours"] if "idle_minutes" in r]
    if idle:
        growth = [r["pid1_rss_idle"] - r["pid1_rss_boot"] for r in idle]
        thp = [(r["pid1"]["idle"].get("thp_kib", 0) - r["pid1"]["boot"].get("thp_kib", 0)) / 1024
               for r in idle]
        print(f"  PID 1 Rss growth over {statistics.median(r['idle_minutes'] for r in idle):.1f} idle "
              f"minutes (ours): {', '.join(f'{g:+.2f}' for g in growth)} MiB "
              f"(of which AnonHugePages: {', '.join(f'{t:+.2f}' for t in thp)} MiB)")
    for r in by["ours"][:1]:
        if r.get("own_boot"):
            print(f"  our processes after boot: {'; '.join(r['own_boot'])}")
    for r in by["ours"]:
        for flags, wall in r.get("startup", {}).items():
            print(f"  guest python3.11 {flags} -c pass: {wall:.2f}s (median of 3)")
        for it in r.get("importtime", []):
            print(f"  guest -X importtime {it['module']:22} imports {it.get('imports_s', 0):.2f}s, "
                  f"process {it.get('wall_s', 0):.2f}s, {it.get('modules', 0):.0f} modules; "
                  f"top: {', '.join(f'{n} {c / 1e6:.2f}s' for n, c in it['top'][:6])}")
    for r in by["ours"] + by[STEADY] + by[STORED]:
        if not r.get("settled", "").startswith("ok"):
            print(f"  ours did not settle (config loaded, apid ready): {r.get('settled', 'no probe line')}")
            for line in r.get("guest_logs", [])[:30]:
                print(f"    {line}")
    failed = [r for r in runs if "error" in r]
    for r in failed:
        print(f"  FAILED boot ({r['kind']}): {r['error']} ({r['serial']})")


def ours_events(r: dict) -> list[dict]:  # ours, first boot or steady state
    """PID 1's events, with the kernel's own /init exec time (PID 1 records its thread's creation)."""
    exec_at = r["marks"].get("exec")
    return [{**e, "exec_at": exec_at} if e.get("name") == "kernel_handoff" and exec_at else e
            for e in r["events"]]


def baseline_events(r: dict) -> list[dict]:
    """The baseline's marks as timeline events, so both charts read the same way."""
    marks = r["marks"]
    events = []
    if "exec" in marks:
        events.append({"t": marks["exec"], "kind": "boot", "name": "kernel_handoff", "state": "done",
                       "exec_at": marks["exec"]})
    prev = marks.get("exec")
    for step in ("mounts", "modules", "network", "config", "containerd"):
        if step in marks and prev is not None:
            events.append({"t": prev, "kind": "phase", "name": step, "state": "start"})
            events.append({"t": marks[step], "kind": "phase", "name": step, "state": "done"})
            prev = marks[step]
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.boot_bench",
                                     description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boots", type=int, default=5, help="boots per image (default 5)")
    parser.add_argument("--idle", type=float, default=600, help="idle seconds measured (default 600)")
    parser.add_argument("--idle-boots", type=int, default=1,
                        help="boots per image that wait --idle seconds (default 1: the first)")
    parser.add_argument("--importtime", action="store_true",
                        help="after the last boot of ours, run -X importtime in the guest")
    parser.add_argument("--uncompressed", action="store_true",
                        help="boot both images as plain cpio (measures the decompression lever)")
    parser.add_argument("--build", type=Path, default=REPO / "build")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "worker.yaml")
    parser.add_argument("--memory", type=int, default=1024, help="MiB, both images")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--no-prealloc", dest="prealloc", action="store_false",
                        help="let the guests fault their RAM in on the host as they touch it "
                             "(slower and noisier under nested virtualization; see the docs)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to containerd ready")
    parser.add_argument("--no-steady", dest="steady", action="store_false",
                        help="only first boots of ours (no install boot, no installed-disk boots)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ours_img, base_img = build_images(args.build, args.out, args.uncompressed)
    kernel = args.build / "vmlinuz"
    sizes = {"ours": ((args.build / "initramfs.img").stat().st_size,
                      manifest_bytes(args.build / "manifest.txt")),
             "baseline": ((args.build / "baseline" / "initramfs.img").stat().st_size,
                          manifest_bytes(args.build / "baseline" / "manifest.txt"))}
    # A healthy node is measured: a config without a machine CA key gets the PKI `make run`
    # generates (cached in BUILD/run-node), else apid would crash-loop in every boot.
    config, _ = config_for_node(args.config.read_bytes(), args.build / "run-node")
    runs = []
    kinds = ["ours", STEADY, STORED, "baseline"] if args.steady else ["ours", "baseline"]
    installed = None
    if args.steady:
        installed = args.out / "installed.raw"
        r = one_boot("ours-install", 0, kernel, ours_img, config, 0, False, args,
                     keep_disk=installed)
        if "error" in r or not installed.exists():
            print(f"  install boot failed: {r.get('error')} ({r['serial']})", file=sys.stderr)
            return 1
        print(f"  install boot (not measured): containerd ready at "
              f"{r.get('containerd', float('nan')):.2f}s; disk kept for the steady-state boots",
              flush=True)
    for i in range(args.boots):
        order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]  # drift hits every kind
        for kind in order:
            idle = args.idle if i < args.idle_boots else 0
            importtime = args.importtime and kind == "ours" and i == args.boots - 1
            r = one_boot(kind, i + 1, kernel, base_img if kind == "baseline" else ours_img, config,
                         idle, importtime, args,
                         disk=installed if kind in (STEADY, STORED) else None)
            runs.append(r)
            print(f"  boot {i + 1}/{args.boots} {kind:11}: containerd ready at "
                  f"{r.get('containerd', float('nan')):.2f}s, config at "
                  f"{r.get('marks', {}).get('config', float('nan')):.2f}s, PID 1 Rss "
                  f"{r.get('pid1_rss_boot', float('nan')):.1f} MiB", flush=True)
    (args.out / "results.json").write_text(json.dumps(runs, indent=1, default=str))
    report(runs, sizes)
    for kind, events in (("ours", next((ours_events(r) for r in runs if r["kind"] == "ours" and r["events"]), [])),
                         (STEADY, next((ours_events(r) for r in runs if r["kind"] == STEADY and r["events"]), [])),
                         (STORED, next((ours_events(r) for r in runs if r["kind"] == STORED and r["events"]), [])),
                         ("baseline", next((baseline_events(r) for r in runs if r["kind"] == "baseline"), []))):
        if not events:
            continue
        svg = args.out / f"timeline-{kind}.svg"
        svg.write_text(timeline_svg.render(events, title=f"boot timeline: {kind}"))
        print(f"  timeline chart: {svg}")
    print(f"  raw results: {args.out / 'results.json'}")
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
