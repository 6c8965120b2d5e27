"""The built image, walked and exercised on the host (root: chroot, mknod)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from initramfs import policy, tree
from initramfs.build import load_recipe
from tests.e2e.overlay import with_files

pytestmark = pytest.mark.host
REPO = Path(__file__).resolve().parents[3]


def _walk(image: Path) -> list[policy.Violation]:
    t = tree.from_members(tree.read_image(image))
    return policy.check(t, t.resolve)


def test_built_image_has_no_shell_interpreter_or_setuid_file(built):
    """Every entry of build/initramfs.img passes the policy (names, #! lines, content, modes)."""
    assert _walk(built / "initramfs.img") == []


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
