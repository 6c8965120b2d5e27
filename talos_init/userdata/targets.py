"""Where config values land on the node: the paths machine.files may write, the names a
registry mirror may have. The validator checks them (``osctl validate`` and the node say
the same), and the code that writes (``hardening``, ``containerd.config``) asks here again.

No I/O and no imports beyond the standard library: PID 1's hardening imports this.
"""

from __future__ import annotations

import os

# As Talos: machine.files writes under /var and to these two files, nowhere else.
ALLOWED_PREFIXES = ("/var/",)
ALLOWED_FILES = frozenset({"/etc/cri/conf.d/20-customization.part", "/etc/nfsmount.conf"})


def file_path_problem(path: str) -> str | None:
    """Why machine.files may not write ``path``, or None when it may."""
    if not path.startswith("/"):
        return f"{path!r} is not absolute"
    if "\0" in path:
        return f"{path!r} contains NUL"
    norm = os.path.normpath(path)
    if norm != path.rstrip("/") or path.endswith("/"):
        return f"{path!r} is not a normalized file path (no '..', '//' or trailing '/')"
    if norm in ALLOWED_FILES or any(norm.startswith(p) for p in ALLOWED_PREFIXES):
        return None
    allowed = ", ".join([*(p + "..." for p in ALLOWED_PREFIXES), *sorted(ALLOWED_FILES)])
    return f"{path!r} is not allowed (allowed: {allowed})"


def mirror_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a registry mirror (it names a directory of hosts.toml files)."""
    if name == "*":
        return None  # the catch-all
    if (not name or "/" in name or name in (".", "..")
            or any(c.isspace() or not c.isprintable() for c in name)):
        return f"{name!r} is not a registry host name"
    return None
