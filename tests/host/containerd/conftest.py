"""The real-containerd fixtures shared with the kubelet tests."""

from tests.host.realcontainerd import (  # noqa: F401  (fixtures)
    containerd, containerd_customization, short_dir)
