"""The built image, walked and exercised on the host (root: chroot, mknod)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from initramfs import policy, squashfs, tree
from initramfs.build import load_recipe
from tests.e2e.overlay import with_files

pytestmark = pytest.mark.host
REPO = Path(__file__).resolve().parents[3]


SQ = load_recipe()["squashfs"]


def _node(image: Path) -> tree.Tree:
    """What the node sees: the archive, and the payload squashfs's content at its mount point."""
    return tree.from_members(squashfs.expand(tree.read_image(image), SQ["image"], SQ["mountpoint"]))


def _walk(image: Path) -> list[policy.Violation]:
    t = _node(image)
    return policy.check(t, t.resolve)


def test_built_image_has_no_shell_interpreter_or_setuid_file(built):
    """Every entry of build/initramfs.img and of its payload squashfs passes the policy."""
    assert _walk(built / "initramfs.img") == []


def test_payload_squashfs_holds_the_big_programs_behind_symlinks(built):
    """The shim, runc, the CNI plugins and the recipe's other paths are in the squashfs,
    root-owned, time 0; their usual paths are symlinks into its mount point (one per directory
    for a path ending in "/"); nothing else is in it (containerd stays unpacked)."""
    node = _node(built / "initramfs.img")
    mount = SQ["mountpoint"]
    programs = ["/usr/bin/containerd-shim-runc-v2", "/usr/sbin/runc",
                *(f"/usr/lib/cni/{p}" for p in load_recipe()["cni"]["plugins"]),
                "/usr/bin/mount", "/usr/bin/umount", "/usr/sbin/xtables-nft-multi",
                "/usr/sbin/conntrack"]
    dirs = [p.rstrip("/") for p in SQ["paths"] if p.endswith("/")]
    # Whole components (the CNI plugins, the netfilter modules...), as the manifest names them.
    by_component = set()
    for line in (built / "manifest.txt").read_text().splitlines():
        kind, _mode, _size, _digest, component, path = line.split()[:6]
        if kind == "f" and component in SQ["components"] and path.startswith(mount + "/") \
                and not any(path.startswith(mount + d + "/") for d in dirs):
            by_component.add(path[len(mount):])
    assert "/usr/sbin/conntrack" in by_component and any("xt_conntrack" in p for p in by_component)
    moved = sorted({*programs, *by_component, *(p for p in SQ["paths"] if not p.endswith("/"))})
    assert node.get("/usr/bin/containerd").kind == "file"
    for path in moved + dirs:
        assert node.get(path).kind == "symlink" and node.get(path).target == mount + path, path
        assert node.resolve(path) == mount + path
        assert node.get(mount + path).kind == ("dir" if path in dirs else "file"), path
    assert all(node.get(mount + path).mode == 0o755 for path in programs)
    files = {e.path for e in node if e.kind == "file" and e.path.startswith(mount + "/")}
    in_dirs = {f for f in files if any(f.startswith(mount + d + "/") for d in dirs)}
    assert all(any(f.startswith(mount + d + "/") for f in in_dirs) for d in dirs)
    assert files - in_dirs == {mount + p for p in moved}
    assert node.get(mount + "/usr/sbin/runc").content() == Path("/usr/sbin/runc").read_bytes()
    listing = subprocess.run(["unsquashfs", "-lln", str(built / "staging" / SQ["image"].lstrip("/"))],
                             capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in listing.splitlines() if line.startswith(("-", "d", "l"))]
    assert rows and {r[1] for r in rows} == {"0/0"} and {(r[3], r[4]) for r in rows} == {("1970-01-01", "00:00")}


def test_pid1_starts_without_the_payload(built):
    """PID 1 mounts the payload itself: the interpreter, the extension modules PID 1 imports
    (as the host's same interpreter imports them) and the kernel modules of that mount must
    not need a file inside it."""
    from initramfs import elf

    node = _node(built / "initramfs.img")
    mount = SQ["mountpoint"] + "/"
    staging = built / "staging"
    probe = ("import sys, talos_init.service.supervisor, talos_init.init\n"
             "print('\\n'.join(sorted(m.__file__.rsplit('/', 1)[1] for m in list(sys.modules.values())"
             " if getattr(m, '__file__', None) and m.__file__.endswith('.so'))))")
    dynload = subprocess.run([sys.executable, "-I", "-c", probe], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    assert dynload, "PID 1 imports no extension module? the probe is broken"
    elves = ["/usr/bin/python3.11", *(f"/usr/lib/python3.11/lib-dynload/{n}" for n in dynload)]
    for path in elves:
        assert node.get(path) is not None, path
        assert not node.resolve(path).startswith(mount), path
        for lib in elf.needed(staging / path.lstrip("/")):
            if Path(lib).name.startswith("ld-linux"):
                continue
            name = "/usr/lib/x86_64-linux-gnu/" + Path(lib).name
            assert node.get(name) is not None, (path, lib)
            assert not node.resolve(name).startswith(mount), f"{path} needs {name}, in the payload"
    # Nor a Python module: a payload path under the interpreter's directories names a module
    # (or package) that neither PID 1 nor its kernel module loader may import.
    probe = ("import sys, talos_init.preload as p, talos_init.service.supervisor, talos_init.init,"
             " talos_init.disk.early, talos_init.hardening, talos_init.service.control\n"
             "p.boot_stages(); print('\\n'.join(sorted(sys.modules)))")
    imported = _imports(probe)
    assert "talos_init.kmodules" in imported, "the probe is broken"
    assert _moved_modules(imported) == {}
    release = (built / "kernel-release").read_text().strip()
    for module in ("loop", "squashfs"):
        found = [e.path for e in node if e.kind == "file" and e.path.startswith(
            f"/usr/lib/modules/{release}/") and Path(e.path).name.startswith(module + ".ko")]
        assert found and not any(node.resolve(f).startswith(mount) for f in found), module


def _imports(probe: str) -> set[str]:
    return set(subprocess.run([sys.executable, "-I", "-c", probe], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.split())


def _moved_modules(imported: set[str]) -> dict[str, list[str]]:
    """{payload path: the imported modules it holds} over the recipe's Python paths."""
    found = {}
    for path in SQ["paths"]:
        for top in ("/usr/lib/python3.11/lib-dynload/", "/usr/lib/python3.11/",
                    "/usr/lib/python3/dist-packages/"):
            if path.startswith(top):
                name = path[len(top):].rstrip("/").split(".")[0].replace("/", ".")
                hit = sorted(m for m in imported if m == name or m.startswith(name + "."))
                if hit:
                    found[path] = hit
                break
    return found


def test_networkd_imports_nothing_from_the_payload():
    """networkd starts on the way to the config: what it imports is read from the unpacked
    archive, not through squashfs (0.4 s slower under TCG, docs/for-devs/performance.md)."""
    imported = _imports("import sys, talos_init.networkd.__main__\nprint('\\n'.join(sys.modules))")
    assert "pyroute2.iproute.linux" in imported, "the probe is broken"
    assert _moved_modules(imported) == {}


def test_kernels_modprobe_helper_is_absent_until_the_payload_is_mounted(built):
    """The kernel runs /sbin/modprobe for request_module() while it starts (crypto self-tests),
    each call waiting for the unpack: it must fail at exec (a dangling symlink, ENOENT) until PID 1
    mounts the payload, not start ld.so and fail on a library; once mounted, it is kmod."""
    node = _node(built / "initramfs.img")
    target = node.resolve("/sbin/modprobe")
    assert target.startswith(SQ["mountpoint"] + "/"), f"{target}: unpacked, the kernel execs it"
    assert node.get(target).kind == "file" and node.get(target).mode == 0o755


def test_image_walk_sees_a_shell_inside_the_payload_squashfs(built, tmp_path):
    """A squashfs holding dash, put in the archive in place of the payload, fails the walk, named."""
    src = tmp_path / "payload" / "usr" / "bin"
    src.mkdir(parents=True)
    (src / "helper").write_bytes(Path("/usr/bin/dash").read_bytes())
    (src / "helper").chmod(0o755)
    squashfs.build(tmp_path / "payload", tmp_path / "bad.squashfs", ["-comp", "zstd"])
    bad = with_files(built / "initramfs.img", tmp_path / "bad.img",
                     {SQ["image"]: ((tmp_path / "bad.squashfs").read_bytes(), 0o644)})
    assert {v.path for v in _walk(bad)} == {SQ["mountpoint"] + "/usr/bin/helper"}


def test_image_walk_catches_a_shell_slipped_into_the_archive(built, tmp_path):
    """The same walk fails, naming the file, on an image with dash appended as /usr/bin/helper."""
    dash = Path("/usr/bin/dash").read_bytes()
    bad = with_files(built / "initramfs.img", tmp_path / "bad.img",
                     {"/usr/bin/helper": (dash, 0o755), "/usr/bin/su": (b"x", 0o4755)})
    found = {v.path for v in _walk(bad)}
    assert found == {"/usr/bin/helper", "/usr/bin/su"}


def test_builder_refuses_a_planted_shell_and_names_it(built, kernel_deb, tmp_path):
    """A recipe run with a shell in the extra rootfs fails with the file named, and writes no image."""
    extra = tmp_path / "extra" / "usr" / "bin"
    extra.mkdir(parents=True)
    (extra / "sh").write_bytes(b"#!/bin/dash\n")
    (extra / "sh").chmod(0o755)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "initramfs.build", "--out", str(out), "--quiet",
                           "--kernel-deb", str(kernel_deb), "--extra-rootfs", str(tmp_path / "extra")],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "/usr/bin/sh: name 'sh' is a shell or interpreter" in proc.stderr
    assert "/usr/bin/sh: script for interpreter '/bin/dash'" in proc.stderr
    assert not (out / "initramfs.img").exists()


def test_builder_checks_what_goes_into_the_squashfs(kernel_deb, tmp_path):
    """A renamed shell sent into the squashfs (recipe [squashfs] paths) is refused at its mounted path."""
    extra = tmp_path / "extra" / "usr" / "bin"
    extra.mkdir(parents=True)
    (extra / "helper").write_bytes(Path("/usr/bin/dash").read_bytes())
    (extra / "helper").chmod(0o755)
    recipe = tmp_path / "recipe.toml"
    text = (REPO / "initramfs" / "recipe.toml").read_text()
    assert "\npaths = [" in text
    recipe.write_text(text.replace("\npaths = [", '\npaths = ["/usr/bin/helper", ', 1))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "initramfs.build", "--out", str(out), "--quiet",
                           "--recipe", str(recipe), "--kernel-deb", str(kernel_deb),
                           "--extra-rootfs", str(tmp_path / "extra")],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert f"{SQ['mountpoint']}/usr/bin/helper: same content as the host's" in proc.stderr
    assert not (out / "initramfs.img").exists()


def test_two_builds_give_identical_bytes(built, kernel_deb, tmp_path):
    """A fresh build (empty .pyc cache, new staging) gives the same image bytes as build/."""
    out = tmp_path / "again"
    subprocess.run([sys.executable, "-m", "initramfs.build", "--out", str(out), "--quiet",
                    "--kernel-deb", str(kernel_deb)], cwd=REPO, check=True)
    assert (out / "manifest.txt").read_text() == (built / "manifest.txt").read_text()
    assert (out / "initramfs.img").read_bytes() == (built / "initramfs.img").read_bytes()


def test_cpio_tool_reads_the_archive(built):
    """GNU cpio lists the decompressed archive, device nodes included."""
    raw = subprocess.run(["zstd", "-dc", str(built / "initramfs.img")], capture_output=True,
                         check=True).stdout
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=raw, capture_output=True,
                             check=True).stdout.decode().split()
    assert {"init", "dev/console", "dev/null", "dev/urandom", "usr/bin/python3.11"} <= set(listing)


def test_every_python_module_imports_inside_the_image(staging_dev_null):
    """Every module of talos_init and the dependencies that imports on the host imports in the image too."""
    script = r"""
import importlib, json, pkgutil, sys
site = "/usr/lib/python3/dist-packages"
failed = {}
names = []
for top in sys.argv[1:]:
    pkg = importlib.import_module(top)
    names.append(top)
    for m in pkgutil.walk_packages(getattr(pkg, "__path__", []), top + "."):
        names.append(m.name)
for name in names:
    if name.endswith("__main__"):
        continue  # runs a program when imported
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = f"{type(e).__name__}: {e}"
print(json.dumps({"count": len(names), "failed": failed}))
"""
    site = staging_dev_null / "usr/lib/python3/dist-packages"
    tops = sorted({p.name.split(".")[0] for p in site.iterdir()
                   if not p.name.endswith(".dist-info") and p.name != "__pycache__"})
    assert {"talos_init", "pyroute2", "pyudev", "yaml", "psutil", "h2"} <= set(tops)
    assert "structlog" not in tops  # one logging stack: talos_init.log

    def run(argv):
        proc = subprocess.run(argv + ["-c", script, *tops], capture_output=True, text=True,
                              check=False, env={"PATH": "/usr/bin"}, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.splitlines()[-1])

    image = run(["/usr/sbin/chroot", str(staging_dev_null), "/usr/bin/python3.11", "-I"])
    host = run([sys.executable])  # the venv the image's packages were copied from
    assert image["count"] > 100
    # Platform modules (psutil._pswindows...) fail on the host too; anything else is a missing stdlib module.
    assert {k: v for k, v in image["failed"].items() if k not in host["failed"]} == {}


def test_every_elf_finds_its_libraries_inside_the_image(staging_dev_null):
    """The image's dynamic loader resolves every library of every ELF program in the image."""
    root = staging_dev_null
    elves = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
             and p.read_bytes()[:4] == b"\x7fELF" and p.stat().st_mode & 0o111
             and ".so" not in p.name and "modules" not in p.parts]
    assert len(elves) > 15
    missing = {}
    for p in elves:
        image_path = "/" + str(p.relative_to(root))
        proc = subprocess.run(["/usr/sbin/chroot", str(root), "/usr/lib64/ld-linux-x86-64.so.2", "--list",
                               image_path], capture_output=True, text=True, check=False)
        if "not found" in proc.stdout or (proc.returncode != 0 and "statically" not in proc.stderr):
            missing[image_path] = proc.stdout + proc.stderr
    assert missing == {}


def test_kernel_modules_and_index_match_the_kernel(built):
    """Every wanted module, and ext4's soft dependency crc32c, is in the image's modules.dep."""
    release = (built / "kernel-release").read_text().strip()
    moddir = built / "staging" / "usr" / "lib" / "modules" / release
    dep = (moddir / "modules.dep").read_text()
    names = {Path(line.split(":")[0]).name.removesuffix(".ko").replace("-", "_")
             for line in dep.splitlines()}
    builtin = {Path(n).name.removesuffix(".ko") for n in (moddir / "modules.builtin").read_text().split()}
    for wanted in load_recipe()["kernel"]["modules"]:
        assert wanted in names or wanted in builtin, wanted
    # Soft dependencies are followed too: ext4 cannot mount without a crc32c implementation.
    assert "crc32c_generic" in names
