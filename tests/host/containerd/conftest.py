"""The real-containerd fixtures shared with the kubelet tests."""

from tests.host.realcontainerd import containerd, short_dir  # noqa: F401  (fixtures)
