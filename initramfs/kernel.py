"""Debian's kernel package: fetched as a .deb, unpacked into a cache, never the host's kernel.

The modules come from the same package, so the image's modules always match
its kernel whatever the build host runs. ``depmod`` gives us modules.dep for
the whole package; we take the closure of the modules the recipe names and
build a fresh index for just those in the staging tree.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Kernel:
    root: Path  # the unpacked package
    release: str  # e.g. 6.1.0-56-amd64
    version: str  # Debian package version, e.g. 6.1.192-2

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def moddir(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def _run(argv: list[str], **kw) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def image_package(meta: str) -> str:
    """The versioned package the ``linux-image-amd64`` metapackage depends on."""
    deps = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", meta])
    for line in deps.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split()[1]
    raise RuntimeError(f"apt-cache depends {meta}: no linux-image dependency found")


def fetch(cache: Path, meta: str = "linux-image-amd64", deb: Path | None = None,
          log=print) -> Kernel:
    """Download (``apt-get download``) and unpack the kernel package into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    if deb is None:
        package = image_package(meta)
        debs = sorted(cache.glob(f"{package}_*.deb"))
        if not debs:
            log(f"kernel: apt-get download {package}")
            try:
                _run(["apt-get", "download", package], cwd=cache)
            except RuntimeError:  # a fresh machine may have no package lists yet
                log("kernel: apt-get update, then retry")
                _run(["apt-get", "update", "-qq"])
                _run(["apt-get", "download", package], cwd=cache)
            debs = sorted(cache.glob(f"{package}_*.deb"))
        deb = debs[-1]
    root = cache / deb.name.removesuffix(".deb")
    if not (root / ".unpacked").exists():
        log(f"kernel: unpacking {deb.name}")
        shutil.rmtree(root, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=cache))
        _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(root)
        (root / ".unpacked").touch()
    version = _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    releases = sorted(p.name for p in (root / "lib" / "modules").iterdir())
    if len(releases) != 1:
        raise RuntimeError(f"{deb.name}: expected one module tree, found {releases}")
    kernel = Kernel(root, releases[0], version)
    if not (kernel.moddir / "modules.dep").exists():
        _run(["depmod", "-b", str(root), kernel.release])
    return kernel


def _dep_table(moddir: Path) -> dict[str, list[str]]:
    table = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        table[path] = deps.split()
    return table


def _name(path: str) -> str:
    base = Path(path).name
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        base = base.removesuffix(suffix)
    return base.replace("-", "_")


def _softdeps(moddir: Path) -> dict[str, list[str]]:
    """Module name -> names or aliases it loads first/after (``softdep ext4 pre: crypto-crc32c``)."""
    soft: dict[str, list[str]] = {}
    for line in (moddir / "modules.softdep").read_text().splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "softdep":
            soft.setdefault(words[1].replace("-", "_"), []).extend(
                w for w in words[2:] if w not in ("pre:", "post:"))
    return soft


def _aliases(moddir: Path) -> dict[str, list[str]]:
    """Exact (wildcard-free) aliases -> module names, e.g. crypto-crc32c -> crc32c_generic."""
    table: dict[str, list[str]] = {}
    for line in (moddir / "modules.alias").read_text().splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "alias" and not any(c in words[1] for c in "*?["):
            table.setdefault(words[1], []).append(words[2].replace("-", "_"))
    return table


def closure(kernel: Kernel, wanted: list[str]) -> tuple[list[str], list[str]]:
    """(module files relative to moddir, in dependency closure; wanted names that are built in).

    Hard dependencies come from modules.dep; soft ones (ext4 needs crc32c through the
    crypto API, which modules.dep cannot see) from modules.softdep, through aliases.
    """
    table = _dep_table(kernel.moddir)
    by_name = {_name(p): p for p in table}
    soft = _softdeps(kernel.moddir)
    aliases = _aliases(kernel.moddir)
    builtin_text = (kernel.moddir / "modules.builtin").read_text()
    builtin = {_name(line) for line in builtin_text.split()}
    files: set[str] = set()
    built_in = []
    for name in wanted:
        key = name.replace("-", "_")
        if key in builtin:
            built_in.append(name)
            continue
        if key not in by_name:
            raise RuntimeError(f"kernel module {name!r} is neither in {kernel.release}'s "
                               "modules.dep nor built in")
        stack = [by_name[key]]
        while stack:
            path = stack.pop()
            if path in files:
                continue
            files.add(path)
            stack.extend(table[path])
            for dep in soft.get(_name(path), []):
                for mod in aliases.get(dep, [dep.replace("-", "_")]):
                    if mod in by_name:
                        stack.append(by_name[mod])
    return sorted(files), built_in


INDEX_FILES = ("modules.order", "modules.builtin", "modules.builtin.modinfo")


def index(kernel: Kernel, files: list[str], work: Path) -> dict[str, bytes]:
    """depmod's index files (modules.dep, .alias, ...) for exactly ``files`` (relative to
    moddir), built in ``work`` from links to the kernel's own copies."""
    shutil.rmtree(work, ignore_errors=True)
    moddir = work / "lib" / "modules" / kernel.release
    for rel in files:
        (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
        (moddir / rel).symlink_to(kernel.moddir / rel)
    for name in INDEX_FILES:
        shutil.copyfile(kernel.moddir / name, moddir / name)
    before = set(moddir.iterdir())
    _run(["depmod", "-b", str(work), kernel.release])
    return {p.name: p.read_bytes() for p in sorted(set(moddir.iterdir()) - before)}
