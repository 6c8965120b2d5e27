"""The image as a mapping of absolute paths to entries, each tagged with its component.

Everything the builder adds goes through ``Tree``, so that the policy check,
the size report, the on-disk staging copy and the cpio archive all see the
same thing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from initramfs import cpio


@dataclass
class Entry:
    path: str  # absolute path inside the image
    kind: str  # "file" | "dir" | "symlink" | "chr"
    mode: int  # permission bits only
    component: str
    src: Path | None = None  # host file holding the content
    data: bytes | None = None  # or the content itself
    target: str = ""  # symlink target
    rdev: tuple[int, int] = (0, 0)

    def content(self) -> bytes:
        if self.kind == "symlink":
            return self.target.encode()
        if self.kind != "file":
            return b""
        if self.data is not None:
            return self.data
        assert self.src is not None
        return self.src.read_bytes()

    @property
    def size(self) -> int:
        if self.kind != "file":
            return 0
        if self.data is not None:
            return len(self.data)
        assert self.src is not None
        return self.src.stat().st_size


_TYPE = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "chr": stat.S_IFCHR}


class Tree:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def __contains__(self, path: str) -> bool:
        return _norm(path) in self.entries

    def __iter__(self) -> Iterator[Entry]:
        return (self.entries[p] for p in sorted(self.entries))

    def get(self, path: str) -> Entry | None:
        return self.entries.get(_norm(path))

    def _add(self, entry: Entry) -> Entry:
        # Entries live at their real path: a parent that is a symlink (/lib -> usr/lib) is followed,
        # since the kernel's cpio unpacker does not follow symlinks.
        path = PurePosixPath(_norm(entry.path))
        entry.path = _norm(str(PurePosixPath(self.resolve(str(path.parent))) / path.name))
        self.mkdir(str(PurePosixPath(entry.path).parent), entry.component)
        old = self.entries.get(entry.path)
        if old is not None and old.kind != "dir" and (old.kind, old.src, old.data, old.target) != (
                entry.kind, entry.src, entry.data, entry.target):
            raise ValueError(f"{entry.path}: added twice with different content "
                             f"({old.component} and {entry.component})")
        if old is None or old.kind != "dir":
            self.entries[entry.path] = entry
        return entry

    def mkdir(self, path: str, component: str, mode: int = 0o755) -> None:
        path = _norm(path)
        if path == "/" or path in self.entries:
            return
        self.mkdir(str(PurePosixPath(path).parent), component)
        self.entries[path] = Entry(path, "dir", mode, component)

    def remove(self, path: str) -> Entry:
        return self.entries.pop(_norm(path))

    def add_file(self, path: str, component: str, *, src: Path | None = None,
                 data: bytes | None = None, mode: int | None = None) -> Entry:
        if (src is None) == (data is None):
            raise ValueError("give exactly one of src and data")
        if mode is None:
            mode = 0o755 if src is not None and os.access(src, os.X_OK) else 0o644
        return self._add(Entry(path, "file", mode & 0o7777, component, src=src, data=data))

    def add_symlink(self, path: str, target: str, component: str) -> Entry:
        return self._add(Entry(path, "symlink", 0o777, component, target=target))

    def add_chr(self, path: str, major: int, minor: int, mode: int, component: str) -> Entry:
        return self._add(Entry(path, "chr", mode, component, rdev=(major, minor)))

    def resolve(self, path: str) -> str:
        """Follow symlinks inside the image (like the kernel would) and return the final path."""
        parts = PurePosixPath(_norm(path)).parts[1:]
        current = PurePosixPath("/")
        hops = 0
        queue = list(parts)
        while queue:
            part = queue.pop(0)
            candidate = current / part if part != ".." else current.parent
            entry = self.entries.get(str(candidate))
            if entry is not None and entry.kind == "symlink":
                hops += 1
                if hops > 40:
                    raise ValueError(f"{path}: too many symlinks")
                target = PurePosixPath(entry.target)
                base = PurePosixPath("/") if target.is_absolute() else current
                queue = list(target.parts[1:] if target.is_absolute() else target.parts) + queue
                current = base
                continue
            current = candidate
        return str(current)

    def members(self, leave_out: str | None = None) -> list[cpio.Member]:
        """The archive's members; ``leave_out``: a directory whose content is not in it."""
        below = None if leave_out is None else _norm(leave_out) + "/"
        return [cpio.Member(e.path.lstrip("/"), _TYPE[e.kind] | e.mode, e.content(), e.rdev)
                for e in self if below is None or not e.path.startswith(below)]

    def write_staging(self, root: Path) -> None:
        """Materialize the tree as real files (device nodes skipped: they need root and mknod)."""
        for e in self:
            dest = root / e.path.lstrip("/")
            if e.kind == "dir":
                dest.mkdir(parents=True, exist_ok=True)
                dest.chmod(e.mode)
            elif e.kind == "symlink":
                dest.symlink_to(e.target)
            elif e.kind == "file":
                dest.write_bytes(e.content())
                dest.chmod(e.mode)


def _norm(path: str) -> str:
    norm = os.path.normpath("/" + path.lstrip("/"))
    return "/" if norm == "//" else norm


def from_members(members: list[cpio.Member]) -> Tree:
    """Rebuild a tree from an archive (to check a built image with the same policy)."""
    kinds = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "chr"}
    tree = Tree()
    for m in members:
        kind = kinds.get(stat.S_IFMT(m.mode))
        if kind is None:
            raise ValueError(f"{m.name}: unexpected file type {stat.S_IFMT(m.mode):o}")
        path = "/" + m.name
        tree.entries[path] = Entry(path, kind, stat.S_IMODE(m.mode), "image",
                                   data=m.data if kind == "file" else None,
                                   target=m.data.decode() if kind == "symlink" else "", rdev=m.rdev)
    return tree


def read_image(path: Path) -> list[cpio.Member]:
    """The members of a zstd-compressed image (all concatenated archives, in order)."""
    import subprocess

    raw = subprocess.run(["zstd", "-d", "-c", str(path)], capture_output=True, check=True).stdout
    members: list[cpio.Member] = []
    while raw.strip(b"\0"):
        raw = raw.lstrip(b"\0")
        part, used = cpio.read_one(raw)
        members += part
        raw = raw[used:]
    return members
