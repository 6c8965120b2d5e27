"""Build the shell-init baseline image: same kernel, modules and containerd as ours, busybox /init.

    .venv/bin/python -m benchmarks.baseline.build --out build/baseline

Needs Debian's static busybox on the build host (``busybox-static``, in
tools/apt-packages.txt so ``tools/setup`` installs it for the benchmark).
The image reuses the product builder's steps through its API
(``initramfs.build.Builder``: layout, binaries, kernel modules, shared
library resolution, depmod/ldconfig staging, the reproducible cpio and zstd
writer) with a recipe cut down to containerd, runc and the CNI plugins, and
skips the policy check on purpose: this image exists to contain a shell.
It never leaves benchmarks/.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
from pathlib import Path

# Run as a file (python benchmarks/...py) too: the repository's packages on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from initramfs.build import Builder, Progress, load_recipe  # noqa: E402

HERE = Path(__file__).resolve().parent
BUSYBOX = Path("/bin/busybox")
KEEP_COMPONENTS = {"containerd+runc"}


def recipe() -> dict:
    """The product recipe without Python, udev, kmod or disk tools."""
    r = copy.deepcopy(load_recipe())
    r["binary"] = [b for b in r["binary"] if b["component"] in KEEP_COMPONENTS]
    r["python"] = {"dlopen": []}
    return r


def applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout
    return sorted(set(out.split()) - {"busybox"})


class BaselineBuilder(Builder):
    def build(self) -> Path:
        if not BUSYBOX.exists():
            raise RuntimeError(f"{BUSYBOX} missing: apt-get install busybox-static")
        head = BUSYBOX.read_bytes()[:4096]
        if b"/lib64/ld-linux" in head or b"ld-linux-x86-64" in head:
            raise RuntimeError(f"{BUSYBOX} is dynamically linked: install busybox-static")
        self.layout()
        self.binaries()
        self.kernel_modules()
        self.overlay()
        self.shell()
        self.shared_libraries()
        self.stage()
        return self.write()

    def shell(self) -> None:
        t = self.tree
        t.add_file("/usr/bin/busybox", "busybox", src=BUSYBOX, mode=0o755)
        names = applets()
        for name in names:
            path = f"/usr/bin/{name}"
            if t.get(t.resolve(path)) is None and t.get(t.resolve(f"/usr/sbin/{name}")) is None:
                t.add_symlink(path, "busybox", "busybox")
        t.add_file("/init", "init", src=HERE / "init", mode=0o755)
        # /etc/containerd/config.toml: the same static file as ours, from the recipe's [files].
        t.add_file("/etc/bench/udhcpc.script", "init", src=HERE / "udhcpc.script", mode=0o755)
        t.add_file("/etc/bench/modules", "init",
                   data=("\n".join(self.recipe["kernel"]["modules"]) + "\n").encode(), mode=0o644)
        self.log(f"busybox: /init script, {len(names)} applets")


def build(out: Path, kernel_deb: Path | None = None, quiet: bool = True) -> Path:
    """Build the baseline into ``out``; return the image path."""
    out.mkdir(parents=True, exist_ok=True)
    builder = BaselineBuilder(recipe(), out.resolve(), Progress(quiet), kernel_deb)
    return builder.build()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline.build",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/baseline"))
    parser.add_argument("--kernel-deb", type=Path, help="the linux-image .deb (default: apt-get download)")
    args = parser.parse_args(argv)
    try:
        builder = BaselineBuilder(recipe(), args.out.resolve(), Progress(False), args.kernel_deb)
        args.out.mkdir(parents=True, exist_ok=True)
        builder.build()
    except RuntimeError as e:
        print(f"baseline build failed: {e}", file=sys.stderr)
        return 1
    print(builder.size_report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
