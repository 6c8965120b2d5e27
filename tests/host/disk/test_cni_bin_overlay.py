"""/opt/cni/bin as a real overlay: the image's plugins below, /var above, writable."""

from __future__ import annotations

import subprocess

import pytest

from talos_init.disk.cnibin import UPPER, mount_cni_bin


@pytest.fixture
def dirs(tmp_path):
    plugins, var, target = tmp_path / "payload/cni", tmp_path / "var", tmp_path / "opt/cni/bin"
    plugins.mkdir(parents=True)
    for name in ("bridge", "portmap"):
        (plugins / name).write_bytes(b"ours " + name.encode())
    yield plugins, var, target
    subprocess.run(["umount", str(target)], capture_output=True)


def test_plugins_are_there_and_a_cni_install_lands_on_var(dirs):
    """Ours are visible at once; a cluster CNI's new and replaced plugins go to /var and are
    there again after a remount (a reboot); the image's files stay untouched."""
    plugins, var, target = dirs
    assert mount_cni_bin(var, target, plugins) == "mounted"
    assert sorted(p.name for p in target.iterdir()) == ["bridge", "portmap"]
    (target / "flannel").write_bytes(b"flannel")
    (target / "bridge").write_bytes(b"calico's bridge")
    assert mount_cni_bin(var, target, plugins) == "already mounted"
    subprocess.run(["umount", str(target)], check=True)
    assert (var / UPPER / "flannel").read_bytes() == b"flannel"
    assert (plugins / "bridge").read_bytes() == b"ours bridge"
    assert mount_cni_bin(var, target, plugins) == "mounted"
    assert (target / "bridge").read_bytes() == b"calico's bridge"
    assert (target / "portmap").read_bytes() == b"ours portmap"


def test_no_plugins_dir_is_skipped(tmp_path):
    """An image without the payload: nothing mounted, said so."""
    result = mount_cni_bin(tmp_path / "var", tmp_path / "bin", tmp_path / "absent")
    assert result.startswith("skipped") and not (tmp_path / "bin").exists()
