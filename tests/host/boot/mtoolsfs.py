"""An ESP image driven by mtools: the real FAT on-disk format without a vfat mount (the
host kernel here has no vfat). Each mtools command is complete when it exits (the image
file is written through), which is what a step after fsync promises on the node."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}


def mtools(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, env=ENV).stdout


def blank_esp(path: Path, mib: int = 40) -> Path:
    subprocess.run(["mkfs.vfat", "-F", "32", "-s", "1", "-n", "EFI", "-C", str(path),
                    str(mib * 1024)], capture_output=True, check=True)
    return path


class MtoolsFs:
    def __init__(self, image: Path):
        self.img = str(image)

    def list(self, directory: str) -> list[str]:
        proc = subprocess.run(["mdir", "-b", "-i", self.img, "::/" + directory],
                              capture_output=True, text=True, env=ENV)
        if proc.returncode != 0:
            return []
        return sorted(line.rstrip("/").rsplit("/", 1)[-1] for line in proc.stdout.splitlines()
                      if line.strip())

    def write(self, path: str, data_from: Path | bytes) -> None:
        if isinstance(data_from, bytes):
            with tempfile.NamedTemporaryFile() as f:
                f.write(data_from)
                f.flush()
                mtools("mcopy", "-o", "-i", self.img, f.name, "::/" + path)
        else:
            mtools("mcopy", "-o", "-i", self.img, str(data_from), "::/" + path)

    def rename(self, old: str, new: str) -> None:
        if os.path.basename(new) in self.list(os.path.dirname(new)):
            mtools("mdel", "-i", self.img, "::/" + new)  # os.replace semantics
        mtools("mren", "-i", self.img, "::/" + old, "::/" + new)

    def delete(self, path: str) -> None:
        if os.path.basename(path) in self.list(os.path.dirname(path)):
            mtools("mdel", "-i", self.img, "::/" + path)

    def mkdir(self, path: str) -> None:
        mtools("mmd", "-i", self.img, "::/" + path)

    def read(self, path: str) -> bytes | None:
        proc = subprocess.run(["mtype", "-i", self.img, "::/" + path], capture_output=True,
                              env=ENV)
        return proc.stdout if proc.returncode == 0 else None
