"""What the image must never contain: a shell, another interpreter, a setuid or setgid file.

The check runs over the finished tree before anything is written, and names
every offending file. Shells are caught by name, by content (the host's own
shell binaries, in case one is renamed) and by ``#!`` line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from initramfs.tree import Entry

# The one interpreter the image may contain; /init and /sbin/init are scripts for it.
ALLOWED_INTERPRETER = "/usr/bin/python3.11"

FORBIDDEN_NAMES = re.compile(
    r"^(sh|ash|bash|dash|zsh|ksh|mksh|pdksh|csh|tcsh|fish|rbash|busybox|toybox"
    r"|perl[0-9.]*|python[0-9.]*|pypy[0-9.]*|ruby[0-9.]*|irb|lua[0-9.]*|luajit|tclsh[0-9.]*|wish[0-9.]*"
    r"|php[0-9.]*|node|nodejs|awk|gawk|mawk|nawk|expect|guile[0-9.]*|rc|es|yash|elvish|nu|xonsh)$")

# Host binaries whose content must not appear under any name.
HOST_SHELLS = ("/usr/bin/bash", "/usr/bin/dash", "/usr/bin/sh", "/usr/bin/busybox", "/usr/bin/perl",
               "/usr/bin/mawk", "/usr/bin/gawk", "/usr/bin/zsh", "/usr/bin/ksh93")


@dataclass(frozen=True)
class Violation:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class PolicyError(Exception):
    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("image refused:\n  " + "\n  ".join(map(str, violations)))


def _host_shell_digests() -> dict[str, str]:
    digests = {}
    for name in HOST_SHELLS:
        path = Path(name)
        if path.is_file():
            digests[hashlib.sha256(path.read_bytes()).hexdigest()] = str(path.resolve())
    return digests


def check(entries: Iterable[Entry], resolve=lambda p: p) -> list[Violation]:
    """Return every violation; ``resolve`` follows symlinks inside the image."""
    shells = _host_shell_digests()
    found = []
    for e in entries:
        name = PurePosixPath(e.path).name
        if e.kind in ("file", "symlink") and FORBIDDEN_NAMES.match(name) and not (
                e.kind == "file" and e.path == ALLOWED_INTERPRETER) and not (
                e.kind == "symlink" and resolve(e.path) == ALLOWED_INTERPRETER
                and name.startswith("python")):
            found.append(Violation(e.path, f"name {name!r} is a shell or interpreter"))
        if e.mode & 0o6000:
            found.append(Violation(e.path, f"setuid/setgid bit set (mode {e.mode:04o})"))
        if e.kind != "file":
            continue
        if not e.mode & 0o111:  # only an executable can be run through its #! line
            continue
        data = e.content()
        if data[:2] == b"#!":
            line = data[:256].split(b"\n", 1)[0][2:].decode(errors="replace").strip()
            interp = line.split()[0] if line.split() else ""
            if interp != ALLOWED_INTERPRETER:
                found.append(Violation(e.path, f"script for interpreter {interp!r}"))
        digest = hashlib.sha256(data).hexdigest()
        if digest in shells:
            found.append(Violation(e.path, f"same content as the host's {shells[digest]}"))
    return found
