"""Build the talos-init initramfs: ``python -m initramfs.build --out build``.

The build reads ``recipe.toml`` and the ``rootfs/`` overlay, assembles a
``Tree``, resolves every shared library, refuses a tree with a shell, another
interpreter or a setuid file, and writes a reproducible zstd-compressed cpio
plus the kernel it was made for. Outputs, under ``--out``:

- ``initramfs.img``  the image (cpio newc, zstd); the recipe's [squashfs] files
                     are in it as one squashfs image that PID 1 mounts
- ``vmlinuz``        Debian's kernel from the same package as the modules
- ``manifest.txt``   one line per entry: mode, size, sha256, component, path
- ``staging/``       the tree as plain files (no device nodes), for tests: the
                     node's view, with the squashfs content at its mount point
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import os
import py_compile
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import defaultdict
from pathlib import Path, PurePosixPath

from initramfs import cpio, elf, kernel, policy, squashfs, stdlib
from initramfs.tree import Tree
from talos_init import atomicfile
from talos_init.service.definition import InvalidDefinitions
from talos_init.service.loader import compile_directory

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RECIPE = HERE / "recipe.toml"
ROOTFS = HERE / "rootfs"

# Debian is merged-/usr: the image keeps the same layout so ldd's answers hold inside it.
MERGED_USR = {"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib", "/lib64": "usr/lib64"}

LAUNCHER = """#!{interpreter} -IS
# PID 1 launcher. The kernel runs it through binfmt_script (no shell involved):
# "python3.11 -I -m {module}", without site and runpy (ten modules fewer before PID 1
# runs; site's one use here, the packages' directory on sys.path, is done by hand).
import sys
sys.path.append("{site_packages}")
from {module}.__main__ import main
sys.exit(main())
"""


class Progress:
    def __init__(self, quiet: bool = False):
        self.t0 = time.monotonic()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {message}", flush=True)


_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _applies(requirement: str) -> bool:
    """Whether a requirement's environment marker holds here (extras never do: none are installed)."""
    if ";" not in requirement:
        return True
    marker = requirement.split(";", 1)[1]
    if "extra" in marker:
        return False
    try:
        from packaging.markers import Marker
    except ImportError:  # pip's vendored copy is always there in a venv
        from pip._vendor.packaging.markers import Marker
    return Marker(marker.strip()).evaluate()


def distributions(pyproject: Path) -> list[str]:
    """The project's dependencies and, recursively, what they require (installed names)."""
    wanted = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    seen: dict[str, str] = {}
    queue = [r for r in wanted if _applies(r)]
    while queue:
        name = _REQ_NAME.match(queue.pop(0)).group(1)
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        dist = importlib.metadata.distribution(name)
        seen[key] = dist.metadata["Name"]
        queue += [r for r in dist.requires or [] if _applies(r)]
    return sorted(seen.values(), key=str.lower)


def usr_path(path: str) -> str:
    """The image path for a host path, folding /lib, /bin... into /usr like Debian does."""
    for top, usr in MERGED_USR.items():
        if path == top or path.startswith(top + "/"):
            return "/" + usr + path[len(top):]
    return path


KUBELET_PATH = "/usr/local/bin/kubelet"  # what services/kubelet.yaml's skip_unless looks for
# --containerd / --runc: the recipe's programs an operator may replace with newer builds
# (Debian's containerd 1.6.20 is past upstream's end of life). containerd's release archive
# ships its runc shim beside it: one found there replaces the recipe's too.
REPLACEABLE = {"containerd": "/usr/bin/containerd", "runc": "/usr/sbin/runc"}
SHIM = "containerd-shim-runc-v2"


def replacements(containerd: Path | None = None, runc: Path | None = None) -> dict[str, Path]:
    """Recipe source path -> the operator's file, for --containerd and --runc."""
    out: dict[str, Path] = {}
    for option, path in (("containerd", containerd), ("runc", runc)):
        if path is None:
            continue
        if not path.is_file():
            raise RuntimeError(f"--{option} {path}: no such file")
        out[REPLACEABLE[option]] = path
        if option == "containerd" and (path.parent / SHIM).is_file():
            out[f"/usr/bin/{SHIM}"] = path.parent / SHIM
    return out


def input_digest(recipe_path: Path = RECIPE, extra: list[Path] = ()) -> str:
    """A hash of what the image is built from: our files by content, host programs by size and mtime."""
    recipe = tomllib.loads(recipe_path.read_text())
    h = hashlib.sha256()
    for b in recipe["binary"]:
        st = Path(b["src"]).stat()
        h.update(f"{b['src']} {st.st_size} {st.st_mtime_ns}".encode())
    roots = [HERE, *(REPO / p for p in recipe["python"]["packages"]), REPO / "services",
             REPO / recipe["python"]["distributions_from"],
             *(REPO / f for f in recipe.get("files", {}) if not f.startswith("/")), *extra]
    for root in roots:
        files = sorted(root.rglob("*")) if root.is_dir() else [root] if root.exists() else []
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(REPO) if f.is_relative_to(REPO) else f).encode())
                h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


class Builder:
    def __init__(self, recipe: dict, out: Path, log: Progress, kernel_deb: Path | None = None,
                 extra_rootfs: list[Path] = (), kubelet: Path | None = None,
                 replace: dict[str, Path] | None = None):
        self.recipe = recipe
        self.kubelet = kubelet
        self.replace = dict(replace or {})  # recipe binary src -> the operator's file
        self.out = out
        self.log = log
        self.kernel_deb = kernel_deb
        self.extra_rootfs = list(extra_rootfs)
        self.cache = out / "cache"
        self.tree = Tree()
        img = recipe["image"]
        self.interpreter = img["interpreter"]
        self.site = img["site_packages"]
        self.kernel: kernel.Kernel | None = None
        self.payload: str | None = None  # the squashfs mount point, once squash() ran

    # ---- steps, in order -------------------------------------------------------------

    def build(self) -> Path:
        self.layout()
        self.python_packages()
        self.stdlib()
        self.binaries()
        self.udev_rules()
        self.kernel_modules()
        self.overlay()
        self.launchers()
        self.shared_libraries()
        self.squash()
        self.check_policy()
        self.stage()
        self.squashfs_image()
        return self.write()

    def layout(self) -> None:
        self.log("layout: directories, merged-/usr links, device nodes")
        t = self.tree
        for top, usr in MERGED_USR.items():
            t.mkdir("/" + usr, "layout")
            t.add_symlink(top, usr, "layout")
        for d in ("/proc", "/sys", "/run", "/tmp", "/var", "/etc", "/root", "/mnt", "/dev"):
            t.mkdir(d, "layout", mode=0o700 if d == "/root" else 0o755)
        t.entries["/tmp"].mode = 0o1777
        # Python reads randomness and the kernel opens /dev/console before /dev is mounted.
        t.add_chr("/dev/console", 5, 1, 0o600, "layout")
        t.add_chr("/dev/null", 1, 3, 0o666, "layout")
        t.add_chr("/dev/urandom", 1, 9, 0o666, "layout")

    def python_packages(self) -> None:
        py = self.recipe["python"]
        t = self.tree
        t.add_file(self.interpreter, "python", src=Path(self.interpreter))
        excluded = [tuple(p.split(".")) for p in py.get("exclude_packages", [])]
        for name in distributions(REPO / py["distributions_from"]):
            dist = importlib.metadata.distribution(name)
            count = 0
            for rel in dist.files or []:
                src = Path(dist.locate_file(rel))
                parts = PurePosixPath(rel).parts
                if parts[0] == ".." or "__pycache__" in parts or not src.is_file():
                    continue
                dotted = (*parts[:-1], parts[-1].split(".")[0])  # a module file or a package
                if any(dotted[:len(x)] == x for x in excluded):
                    continue
                if parts[0].endswith(".dist-info") and parts[-1] not in ("METADATA", "entry_points.txt"):
                    continue
                self._add_python_file(f"{self.site}/{rel}", src, "deps", keep_source=False)
                count += 1
            self.log(f"deps: {name} {dist.version} ({count} files)")
        for pkg in py["packages"]:
            root = REPO / pkg
            files = [f for f in sorted(root.rglob("*")) if f.is_file()
                     and "__pycache__" not in f.parts and f.suffix in (".py", ".typed")]
            for f in files:
                self._add_python_file(f"{self.site}/{f.relative_to(REPO)}", f, pkg, keep_source=True)
            self.log(f"{pkg}: {len(files)} files")
        services = REPO / "services"
        if services.is_dir():
            # Validated here and shipped as JSON: PID 1 never imports yaml for its own graph.
            for name, data in sorted(compile_directory(services).items()):
                t.add_file(f"/usr/lib/talos/services/{name}", "services", data=data, mode=0o644)

    def _module_names(self) -> list[str]:
        names = []
        for e in self.tree:
            if not e.path.startswith(self.site + "/") or e.kind != "file":
                continue
            rel = PurePosixPath(e.path).relative_to(self.site)
            if rel.parts[0].endswith(".dist-info") or "__pycache__" in rel.parts:
                continue
            if rel.suffix in (".pyc", ".py") or rel.name.endswith(".so"):
                parts = list(rel.parts)
                parts[-1] = parts[-1].split(".")[0]
                if parts[-1] == "__init__":
                    parts.pop()
                if parts:
                    names.append(".".join(parts))
        return sorted(set(names))

    def stdlib(self) -> None:
        py = self.recipe["python"]
        site_stage = self.cache / "site-trace"
        shutil.rmtree(site_stage, ignore_errors=True)
        for e in self.tree:
            if e.kind == "file" and e.path.startswith(self.site + "/"):
                dest = site_stage / PurePosixPath(e.path).relative_to(self.site)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(e.content())
        modules = self._module_names()
        if self.kubelet is not None and self.kubelet.is_file() \
                and self.kubelet.read_bytes().startswith(f"#!{self.interpreter}".encode()):
            # A kubelet written for the image's interpreter needs its stdlib imports too.
            (site_stage / "_kubelet_script.py").write_bytes(self.kubelet.read_bytes())
            modules.append("_kubelet_script")
        self.log(f"stdlib: tracing imports of {len(modules)} modules")
        extra = []
        for name in py["extra_stdlib"]:  # "pkg.*": every module of a stdlib package
            if name.endswith(".*"):
                pkg = name[:-2]
                pkg_dir = stdlib.STDLIB.joinpath(*pkg.split("."))
                extra += [pkg] + [f"{pkg}.{f.stem}" for f in sorted(pkg_dir.glob("*.py"))
                                  if f.stem != "__init__"]
            else:
                extra.append(name)
        traced = stdlib.trace(self.interpreter, site_stage, [*modules, *extra], py["exclude_stdlib"])
        for file in traced.modules.values():
            src = Path(file)
            rel = src.relative_to(stdlib.STDLIB)
            self._add_python_file(f"/usr/lib/python3.11/{rel}", src, "stdlib", keep_source=False)
        self.log(f"stdlib: {len(traced.modules)} modules, {len(traced.builtin)} built in")
        shutil.rmtree(site_stage, ignore_errors=True)

    def _add_python_file(self, path: str, src: Path, component: str, keep_source: bool) -> None:
        if src.suffix != ".py":
            self.tree.add_file(path, component, src=src, mode=0o755 if src.name.endswith(".so") else 0o644)
            return
        pyc = self._compile(src, path)
        p = PurePosixPath(path)
        if keep_source:
            self.tree.add_file(path, component, src=src, mode=0o644)
            tag = sys.implementation.cache_tag
            self.tree.add_file(str(p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc"), component,
                               src=pyc, mode=0o644)
        else:
            self.tree.add_file(str(p.with_suffix(".pyc")), component, src=pyc, mode=0o644)

    def _compile(self, src: Path, image_path: str) -> Path:
        # Hash-based, unchecked: no source mtime in the .pyc (reproducible) and no stat() at import.
        data = src.read_bytes()
        key = hashlib.sha256(image_path.encode() + b"\0" + data).hexdigest()
        out = self.cache / "pyc" / key[:2] / f"{key}.pyc"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            py_compile.compile(str(src), cfile=str(tmp), dfile=image_path, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            tmp.rename(out)
        return out

    def binaries(self) -> None:
        for b in self.recipe["binary"]:
            src = Path(b["src"])
            dest = usr_path(b.get("dest", str(src)))
            if b["src"] in self.replace:
                src = self.replace[b["src"]]
                self.log(f"binaries: {src} -> {dest} (instead of {b['src']})")
            self.tree.add_file(dest, b["component"], src=src.resolve(), mode=0o755)
            for link in b.get("links", []):
                self.tree.add_symlink(usr_path(link), dest, b["component"])
        for d in self.recipe.get("directory", []):
            src = Path(d["src"])
            files = sorted(f for f in src.rglob("*") if f.is_file())
            if not files:
                raise RuntimeError(f"recipe [[directory]] {src}: no files there")
            for f in files:
                self.tree.add_file(usr_path(str(f)), d["component"], src=f.resolve(), mode=0o644)
        cni = self.recipe["cni"]
        for name in cni["plugins"]:
            self.tree.add_file(f"{cni['dest_dir']}/{name}", "cni", src=Path(cni["src_dir"]) / name,
                               mode=0o755)
        self.log(f"binaries: {len(self.recipe['binary'])} programs, {len(cni['plugins'])} CNI plugins")

    _PROGRAM = re.compile(r'\b(RUN|PROGRAM|IMPORT\{program\})(?:\{program\})?\s*\+?=\s*"([^"]*)"')
    _ASSIGN = re.compile(r'ENV\{(\w+)\}\s*=\s*"')

    def udev_rules(self) -> None:
        udev = self.recipe["udev"]
        texts = {n: (Path(udev["src_dir"]) / n).read_text() for n in udev["rules"]}
        assigned = {v for text in texts.values() for v in self._ASSIGN.findall(text)}
        for name, text in texts.items():
            for lineno, line in enumerate(text.splitlines(), 1):
                if line.lstrip().startswith("#"):
                    continue
                for _key, program in self._PROGRAM.findall(line):
                    self._check_udev_program(name, lineno, program, assigned)
            self.tree.add_file(f"/usr/lib/udev/rules.d/{name}", "udev", data=text.encode(), mode=0o644)
        self.log(f"udev: {len(texts)} rule files checked")

    def _check_udev_program(self, rules: str, lineno: int, program: str, assigned: set[str]) -> None:
        word = program.split()[0] if program.split() else ""
        where = f"udev rule {rules}:{lineno}"
        var = re.fullmatch(r"\$env\{(\w+)\}", word)
        if var:
            # A command taken from a variable runs only if some rule in the set sets it.
            if var.group(1) in assigned:
                raise RuntimeError(f"{where}: runs ${var.group(1)}, which a rule sets: cannot vet it")
            return
        path = word if word.startswith("/") else f"/usr/lib/udev/{word}"
        entry = self.tree.get(self.tree.resolve(usr_path(path)))
        if entry is None or entry.kind != "file" or not elf.is_elf(entry.content()[:4]):
            raise RuntimeError(f"{where}: runs {word!r}, which is not an ELF program in the image")

    def kernel_modules(self) -> None:
        k = self.recipe["kernel"]
        self.kernel = kernel.fetch(self.cache / "kernel", k["package"], self.kernel_deb, log=self.log)
        files, built_in = kernel.closure(self.kernel, k["modules"])
        # Modules only loaded later (netfilter): their own component, moved to the payload.
        later, later_built_in = kernel.closure(self.kernel, k.get("payload_modules", []))
        later = sorted(set(later) - set(files))
        base = f"/usr/lib/modules/{self.kernel.release}"
        for rel in files:
            self.tree.add_file(f"{base}/{rel}", "modules", src=self.kernel.moddir / rel, mode=0o644)
        for rel in later:
            self.tree.add_file(f"{base}/{rel}", "netfilter", src=self.kernel.moddir / rel,
                               mode=0o644)
        for name in kernel.INDEX_FILES:
            self.tree.add_file(f"{base}/{name}", "modules", src=self.kernel.moddir / name, mode=0o644)
        # The index of exactly these files, made here: once squashed, a module is a symlink
        # into the payload, which depmod could not follow in the staging tree.
        for name, data in kernel.index(self.kernel, files + later, self.cache / "depmod").items():
            self.tree.add_file(f"{base}/{name}", "modules", data=data, mode=0o644)
        built_in += later_built_in
        self.log(f"modules: {len(k['modules'])} wanted -> {len(files)} files with dependencies"
                 + (f"; built in: {', '.join(built_in)}" if built_in else "")
                 + f"; {len(later)} more for later (payload)"
                 + f" ({self.kernel.release}, package {self.kernel.version})")

    def overlay(self) -> None:
        for name, dest in sorted(self.recipe.get("files", {}).items()):
            self.tree.add_file(dest, "etc", src=(REPO / name).resolve(), mode=0o644)
        for root in (ROOTFS, *self.extra_rootfs):
            for f in sorted(root.rglob("*")):
                if f.is_file():
                    mode = f.stat().st_mode & 0o755
                    self.tree.add_file("/" + str(f.relative_to(root)), "etc" if root == ROOTFS else
                                       "extra", src=f, mode=mode)
        if self.kubelet is not None:
            # The user's kubelet (an ELF, or a script for the image's one interpreter: the policy
            # step checks it like every other file). Without it the kubelet service is skipped.
            if not self.kubelet.is_file():
                raise RuntimeError(f"--kubelet {self.kubelet}: no such file")
            self.tree.add_file(KUBELET_PATH, "kubelet", src=self.kubelet.resolve(), mode=0o755)
            self.log(f"kubelet: {self.kubelet} -> {KUBELET_PATH}")

    def launchers(self) -> None:
        img = self.recipe["image"]
        text = LAUNCHER.format(interpreter=self.interpreter, module=img["init_module"],
                               site_packages=img["site_packages"])
        self.tree.add_file("/init", "init", data=text.encode(), mode=0o755)
        self.tree.add_symlink("/usr/sbin/init", "/init", "init")

    def shared_libraries(self) -> None:
        seen: dict[str, str] = {}
        queue = [e for e in self.tree if e.kind == "file" and e.src is not None
                 and elf.is_elf(e.content()[:4])]
        libs = set()
        for e in queue:
            libs.update(elf.needed(e.src))
        for soname in self.recipe["python"].get("dlopen", []):
            path = self._find_host_library(soname)
            libs.add(path)
            libs.update(elf.needed(Path(path)))
        for lib in sorted(libs):
            dest = usr_path(lib)
            if dest in seen or self.tree.get(dest) is not None:
                continue
            seen[dest] = lib
            self.tree.add_file(dest, "libs", src=Path(lib).resolve(), mode=0o755)
        self.log(f"libs: {len(seen)} shared libraries resolved for {len(queue)} ELF files")

    @staticmethod
    def _find_host_library(soname: str) -> str:
        for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"):
            if (Path(d) / soname).exists():
                return f"{d}/{soname}"
        raise RuntimeError(f"recipe dlopen: {soname} not found on this host")

    def squash(self) -> None:
        """Move the [squashfs] components and paths under the mount point; a symlink stays at each
        path. A path ending in "/" is a directory: all of it moves, one symlink stays (fewer
        archive entries for the kernel to unpack than one per file)."""
        sq = self.recipe["squashfs"]
        mount = sq["mountpoint"]
        paths = {p for p in sq.get("paths", []) if not p.endswith("/")}
        dirs = [p.rstrip("/") for p in sq.get("paths", []) if p.endswith("/")]

        def in_dir(path: str) -> str | None:
            return next((d for d in dirs if path.startswith(d + "/")), None)

        moved = [e for e in self.tree if e.kind == "file"
                 and (e.component in sq["components"] or e.path in paths or in_dir(e.path))]
        if inside := sorted(p for p in paths if in_dir(p)):
            raise RuntimeError(f"recipe [squashfs] paths inside a directory also listed: "
                               f"{', '.join(inside)}")
        if missing := paths - {e.path for e in moved}:
            raise RuntimeError(f"recipe [squashfs] paths not in the image: {', '.join(sorted(missing))}")
        for d in dirs:
            below = [e for e in self.tree if e.path.startswith(d + "/")]
            if self.tree.get(d) is None or self.tree.get(d).kind != "dir" or not below:
                raise RuntimeError(f"recipe [squashfs] paths: {d}/ is not a directory in the image")
            if odd := [e.path for e in below if e.kind not in ("file", "dir")]:
                raise RuntimeError(f"recipe [squashfs] paths: {d}/ holds what only files may: "
                                   f"{', '.join(odd)}")
        for e in moved:
            self.tree.remove(e.path)
            self.tree.add_file(mount + e.path, e.component, src=e.src, data=e.data, mode=e.mode)
            if not in_dir(e.path):
                self.tree.add_symlink(e.path, mount + e.path, e.component)
        for d in dirs:
            for e in [e for e in self.tree if e.path == d or e.path.startswith(d + "/")]:
                self.tree.remove(e.path)  # the directories left, deepest last: none is a file
            self.tree.add_symlink(d, mount + d, "squashfs")
        self.payload = mount
        self.log(f"squashfs: {len(moved)} files ({', '.join(sq['components'])}, {len(paths)} more, "
                 f"{len(dirs)} directories) under {mount}")

    def squashfs_image(self) -> None:
        """mksquashfs the staged payload: fixed times, root-owned, no xattrs, same bytes each build."""
        if self.payload is None:
            return
        sq = self.recipe["squashfs"]
        image = self.out / "staging" / sq["image"].lstrip("/")
        squashfs.build(self.out / "staging" / self.payload.lstrip("/"), image, sq["compression"],
                       self.recipe["image"]["mtime"])
        self.tree.add_file(sq["image"], "squashfs", src=image, mode=0o644)
        raw = sum(e.size for e in self.tree if e.path.startswith(self.payload + "/"))
        self.log(f"squashfs: {raw / 2**20:.1f} MiB -> {image.stat().st_size / 2**20:.1f} MiB "
                 f"({' '.join(sq['compression'])})")

    def check_policy(self) -> None:
        violations = policy.check(self.tree, self.tree.resolve)
        if violations:
            raise policy.PolicyError(violations)
        self.log("policy: no shell, no other interpreter, no setuid/setgid file")

    def stage(self) -> None:
        """Write the tree to disk, then let ldconfig index it there."""
        staging = self.out / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self.tree.write_staging(staging)
        subprocess.run(["ldconfig", "-X", "-r", str(staging)], check=True)
        cache = staging / "etc" / "ld.so.cache"
        self.tree.add_file("/etc/ld.so.cache", "libs", data=cache.read_bytes(), mode=0o644)
        self.log("index: ld.so.cache built in the staging tree (modules: indexed with them)")

    def write(self) -> Path:
        mtime = self.recipe["image"]["mtime"]
        raw = io.BytesIO()
        cpio.write(raw, self.tree.members(leave_out=self.payload), mtime=mtime)
        level = self.recipe["image"]["zstd_level"]
        self.log(f"cpio: {raw.tell() / 2**20:.1f} MiB, compressing (zstd -{level})")
        proc = subprocess.run(["zstd", f"-{level}", "-T0", "-q", "-c", "--no-progress"],
                              input=raw.getvalue(), capture_output=True, check=True)
        image = self.out / "initramfs.img"
        tmp = image.with_suffix(".tmp")
        tmp.write_bytes(proc.stdout)
        tmp.rename(image)
        assert self.kernel is not None
        shutil.copyfile(self.kernel.vmlinuz, self.out / "vmlinuz")
        (self.out / "manifest.txt").write_text(self.manifest())
        (self.out / "kernel-release").write_text(self.kernel.release + "\n")
        self.log(f"image: {image} {len(proc.stdout) / 2**20:.1f} MiB compressed")
        return image

    def manifest(self) -> str:
        lines = []
        for e in self.tree:
            digest = hashlib.sha256(e.content()).hexdigest()[:16] if e.kind == "file" else "-"
            extra = f" -> {e.target}" if e.kind == "symlink" else (
                f" c {e.rdev[0]},{e.rdev[1]}" if e.kind == "chr" else "")
            lines.append(f"{e.kind[0]} {e.mode:04o} {e.size:>10} {digest:16} {e.component:16} "
                         f"{e.path}{extra}")
        return "\n".join(lines) + "\n"

    def size_report(self) -> str:
        sizes: dict[str, int] = defaultdict(int)
        counts: dict[str, int] = defaultdict(int)
        lazy: dict[str, int] = defaultdict(int)  # raw bytes read from the squashfs, not unpacked
        below = f"{self.payload}/" if self.payload else None
        for e in self.tree:
            sizes[e.component] += e.size
            counts[e.component] += 1
            if below and e.path.startswith(below):
                lazy[e.component] += e.size
        total = sum(sizes.values())
        rows = [f"{'component':18} {'files':>6} {'MiB':>8} {'share':>6}  where"]
        for comp, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
            where = "squashfs" if lazy[comp] == size and size else "squashfs (part)" if lazy[comp] else ""
            rows.append(f"{comp:18} {counts[comp]:6} {size / 2**20:8.2f} {100 * size / total:5.1f}%  {where}")
        unpacked = total - sum(lazy.values())
        rows.append(f"{'total (raw)':18} {sum(counts.values()):6} {total / 2**20:8.2f}")
        if below:
            rows.append(f"{'  in the squashfs':18} {'':6} {sum(lazy.values()) / 2**20:8.2f}  read on demand")
            rows.append(f"{'  kernel unpacks':18} {'':6} {unpacked / 2**20:8.2f}  (the squashfs image included)")
        image = self.out / "initramfs.img"
        rows.append(f"{'image (zstd)':18} {'':6} {image.stat().st_size / 2**20:8.2f}")
        return "\n".join(rows)


STAMP = "input-digest"  # in --out: the input_digest() the image there was built from


def _write_stamp(out: Path, digest: str | None) -> None:
    """Record (or with None, forget) what the image in ``out`` was built from; crash-safe."""
    stamp = out / STAMP
    if digest is None:
        stamp.unlink(missing_ok=True)
        return
    atomicfile.write_atomic(stamp, digest.encode())


def ensure_built(out: Path, quiet: bool = True, kubelet: Path | None = None) -> Path:
    """Build into ``out`` unless it already holds an image from the same inputs; return the image.

    ``python -m initramfs.build`` (``make image``) writes the same stamp, so an image it built is
    reused here rather than built again.
    """
    digest = input_digest(extra=[kubelet] if kubelet else [])
    stamp = out / STAMP
    image = out / "initramfs.img"
    if stamp.exists() and stamp.read_text() == digest and image.exists():
        return image
    argv = [sys.executable, "-m", "initramfs.build", "--out", str(out)] + (["--quiet"] if quiet else []) \
        + (["--kubelet", str(kubelet)] if kubelet else [])
    proc = subprocess.run(argv, cwd=REPO, capture_output=quiet, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"image build failed:\n{proc.stdout}\n{proc.stderr}")
    return image


def load_recipe(path: Path = RECIPE) -> dict:
    return tomllib.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m initramfs.build", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build"))
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--kernel-deb", type=Path, help="use this linux-image .deb instead of apt-get download")
    parser.add_argument("--extra-rootfs", type=Path, action="append", default=[],
                        help="a directory whose files are added to the image (tests)")
    parser.add_argument("--kubelet", type=Path,
                        help=f"the kubelet binary to install as {KUBELET_PATH} (none: the service is skipped)")
    parser.add_argument("--containerd", type=Path,
                        help=f"a containerd binary to ship instead of Debian's (a {SHIM} "
                             "beside it is taken too)")
    parser.add_argument("--runc", type=Path, help="a runc binary to ship instead of Debian's")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if os.path.realpath(sys.executable) != os.path.realpath(load_recipe(args.recipe)["image"]["interpreter"]):
        parser.error(f"run the builder with the image's interpreter "
                     f"({load_recipe(args.recipe)['image']['interpreter']}, e.g. .venv/bin/python): "
                     f"its .pyc files and extension modules must match")
    args.out.mkdir(parents=True, exist_ok=True)
    # Only a build ensure_built() would make is stamped as one; any other leaves no stamp,
    # and a failed or interrupted build leaves none either (the stamp goes first).
    plain = args.recipe.resolve() == RECIPE and not args.extra_rootfs and args.kernel_deb is None
    digest = input_digest(extra=[args.kubelet] if args.kubelet else []) if plain else None
    _write_stamp(args.out, None)
    log = Progress(args.quiet)
    try:
        builder = Builder(load_recipe(args.recipe), args.out.resolve(), log, args.kernel_deb,
                          args.extra_rootfs, args.kubelet, replacements(args.containerd, args.runc))
        builder.build()
    except (policy.PolicyError, RuntimeError, InvalidDefinitions) as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    _write_stamp(args.out, digest)
    print(builder.size_report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
