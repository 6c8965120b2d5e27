"""The builder's --kubelet, --containerd and --runc options: the operator's binaries, policy-checked."""

from pathlib import Path

import pytest

from initramfs import policy
from initramfs.build import KUBELET_PATH, Builder, Progress, load_recipe, replacements

STANDIN = Path(__file__).resolve().parents[2] / "kubelet_standin" / "kubelet.py"


def _overlay(tmp_path: Path, kubelet: Path) -> Builder:
    b = Builder(load_recipe(), tmp_path, Progress(True), kubelet=kubelet)
    b.tree.add_file("/usr/bin/python3.11", "python", data=b"\x7fELF fake interpreter", mode=0o755)
    b.overlay()
    return b


def test_kubelet_is_installed_executable_and_passes_the_policy(tmp_path):
    """The stand-in (a python3.11 script) lands at /usr/local/bin/kubelet, 0755, policy clean."""
    b = _overlay(tmp_path, STANDIN)
    entry = b.tree.get(KUBELET_PATH)
    assert entry is not None and entry.mode & 0o777 == 0o755
    assert entry.content() == STANDIN.read_bytes()
    assert [v for v in policy.check(b.tree, b.tree.resolve) if v.path == KUBELET_PATH] == []


def test_a_shell_script_kubelet_is_refused(tmp_path):
    """A kubelet that is a shell script fails the policy, naming the file."""
    script = tmp_path / "kubelet"
    script.write_text("#!/bin/sh\nexec true\n")
    b = _overlay(tmp_path, script)
    assert KUBELET_PATH in {v.path for v in policy.check(b.tree, b.tree.resolve)}


def test_a_missing_kubelet_is_a_clear_error(tmp_path):
    """--kubelet with a path that does not exist names it."""
    with pytest.raises(RuntimeError, match="--kubelet .*nope: no such file"):
        _overlay(tmp_path, tmp_path / "nope")


def test_containerd_and_runc_can_be_replaced(tmp_path):
    """--containerd and --runc put the operator's files where the recipe's programs go; a runc
    shim beside containerd (as in containerd's release archive) comes along."""
    bindir = tmp_path / "release/bin"
    bindir.mkdir(parents=True)
    for name in ("containerd", "containerd-shim-runc-v2", "runc.amd64"):
        (bindir / name).write_bytes(b"\x7fELF " + name.encode())
    replace = replacements(bindir / "containerd", bindir / "runc.amd64")
    b = Builder(load_recipe(), tmp_path, Progress(True), replace=replace)
    b.binaries()
    for dest, name in (("/usr/bin/containerd", "containerd"), ("/usr/sbin/runc", "runc.amd64"),
                       ("/usr/bin/containerd-shim-runc-v2", "containerd-shim-runc-v2")):
        assert b.tree.get(dest).content() == b"\x7fELF " + name.encode(), dest


def test_a_missing_containerd_is_a_clear_error(tmp_path):
    """--containerd naming nothing is an error naming the option and the path."""
    with pytest.raises(RuntimeError, match="--containerd .*nope: no such file"):
        replacements(containerd=tmp_path / "nope")
