"""The built image for host-side checks: built once (cached by input hash) into build/."""

import os
from pathlib import Path

import pytest

from initramfs.build import ensure_built

REPO = Path(__file__).resolve().parents[3]
BUILD = Path(os.environ.get("TALOS_BUILD_DIR", REPO / "build"))


@pytest.fixture(scope="session")
def built() -> Path:
    ensure_built(BUILD)
    return BUILD


@pytest.fixture(scope="session")
def kernel_deb(built) -> Path:
    debs = sorted((built / "cache" / "kernel").glob("linux-image-*.deb"))
    assert debs, "the build left no kernel .deb in its cache"
    return debs[-1]


@pytest.fixture
def staging_dev_null(built):
    """/dev/null inside the staging tree (chroot checks need it), removed afterwards."""
    null = built / "staging" / "dev" / "null"
    if not null.exists():
        os.mknod(null, 0o20666, os.makedev(1, 3))
    yield built / "staging"
    null.unlink(missing_ok=True)
