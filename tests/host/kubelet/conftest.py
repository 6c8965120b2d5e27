"""The kubelet stand-in installed as a binary, next to a real containerd (shared fixtures)."""

from __future__ import annotations

import shutil

import pytest

from tests.host.realcontainerd import (  # noqa: F401  (fixtures)
    REPO, containerd, containerd_customization, short_dir)

STANDIN = REPO / "tests/kubelet_standin/kubelet.py"


@pytest.fixture
def fake_kubelet(tmp_path):
    """The stand-in installed as an executable 'kubelet' in tmp_path, byte for byte as an image
    gets it: its own shebang runs it with the system /usr/bin/python3.11."""
    path = tmp_path / "bin/kubelet"
    path.parent.mkdir()
    shutil.copyfile(STANDIN, path)
    path.chmod(0o755)
    return path
