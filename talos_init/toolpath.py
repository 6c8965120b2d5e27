"""Find the node's binaries whatever PATH the supervisor gave a service (often none).

Python's default search path without $PATH is /bin:/usr/bin, which misses the
sbin tools (sgdisk, mkfs.ext4, e2fsck, modprobe, runc) and, in an image
without the merged-/usr symlinks, may miss everything.
"""

from __future__ import annotations

import os
import shutil

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ToolMissing(FileNotFoundError):
    pass


def tool(name: str, path: str | None = None) -> str:
    """Absolute path of ``name``; ToolMissing names the tool and where it was looked for."""
    search = path or os.environ.get("PATH") or SYSTEM_PATH
    found = shutil.which(name, path=search) or shutil.which(name, path=SYSTEM_PATH)
    if found is None:
        raise ToolMissing(f"{name} is not in this image (looked in {search})")
    return found


def ensure_path(env: dict[str, str] | None = None) -> None:
    """Give an exec'd daemon (containerd, kubelet) a PATH to find runc, shims and mount."""
    target = os.environ if env is None else env
    if not target.get("PATH"):
        target["PATH"] = SYSTEM_PATH
