"""An OCI archive built here is streamed into the real containerd's k8s.io namespace and listed."""

from __future__ import annotations

import pytest

from talos_init.containerd.images import Ctr, ImageError
from tests.host.containerd.oci import oci_archive


def test_oci_archive_is_imported_in_chunks_and_listed(containerd, tmp_path):
    """The archive goes in through stdin in small chunks; the image is listed with its digest."""
    archive = oci_archive("example.local/talos-init/hello:1", {"hello": b"#not a shell\n"})
    ctr = Ctr(address=containerd, timeout=120)
    imported = ctr.import_stream(archive[i:i + 4096] for i in range(0, len(archive), 4096))
    assert [ref for ref, _ in imported] == ["example.local/talos-init/hello:1"]
    images = {i.ref: i for i in ctr.images()}
    assert images["example.local/talos-init/hello:1"].digest == imported[0][1]
    assert "linux/amd64" in images["example.local/talos-init/hello:1"].platforms
    assert ctr.containers() == []
    other = Ctr(address=containerd, namespace="default", timeout=60)
    assert other.images() == []  # imported where the kubelet's CRI looks, nowhere else


def test_garbage_is_refused_with_ctrs_reason(containerd):
    """Bytes that are not an image archive fail with ctr's own message."""
    with pytest.raises(ImageError, match="ctr images import"):
        Ctr(address=containerd, timeout=60).import_stream([b"this is not a tar archive" * 100])
