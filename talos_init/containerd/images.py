"""Images and containers in containerd's ``k8s.io`` namespace, through the ``ctr`` client.

For apid (``osctl image import`` / ``osctl image list`` / ``osctl containers -k``):
an OCI or docker image archive is streamed into ``ctr images import -`` (stdin),
so the upload never has to fit in memory or on disk first. A child daemon may
wait on ``ctr``; PID 1 never calls this module.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = "k8s.io"  # where the kubelet's CRI looks for images
UNPACKED = re.compile(r"^unpacking (\S+) \((sha256:[0-9a-f]{64})\)")
SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


class ImageError(Exception):
    pass


@dataclass(frozen=True)
class Image:
    ref: str
    media_type: str
    digest: str
    size: int  # bytes, as ctr reports it (rounded to its unit)
    platforms: tuple[str, ...]


@dataclass(frozen=True)
class Container:
    id: str
    image: str
    runtime: str


@dataclass(frozen=True)
class Ctr:
    address: Path = Path("/run/containerd/containerd.sock")
    binary: str = "/usr/bin/ctr"
    namespace: str = NAMESPACE
    timeout: float = 600.0

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--address", str(self.address), "--namespace", self.namespace, *args]

    def _run(self, *args: str) -> str:
        try:
            r = subprocess.run(self._argv(*args), capture_output=True, text=True,
                               timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ImageError(f"ctr {' '.join(args)}: {exc}") from None
        if r.returncode != 0:
            raise ImageError(f"ctr {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
        return r.stdout

    def import_stream(self, chunks: Iterable[bytes]) -> list[tuple[str, str]]:
        """Stream an image archive (tar) into containerd; returns (ref, digest) imported."""
        try:
            proc = subprocess.Popen(self._argv("images", "import", "-"), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise ImageError(f"ctr images import: {exc}") from None
        assert proc.stdin is not None
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # ctr stopped reading: its stderr below says why
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        try:  # communicate() closes stdin: end of archive
            # (ctr prints a line per image: its pipes cannot fill while we were writing)
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise ImageError(f"ctr images import: no answer within {self.timeout:g}s") from None
        if proc.returncode != 0:
            raise ImageError("ctr images import: "
                             + (err.decode(errors="replace").strip() or f"exit {proc.returncode}"))
        imported = [(m.group(1), m.group(2)) for line in out.decode(errors="replace").splitlines()
                    if (m := UNPACKED.match(line))]
        if not imported:
            raise ImageError("ctr images import: the archive named no image "
                             "(an OCI archive needs the io.containerd.image.name annotation)")
        return imported

    def import_file(self, path: Path, chunk: int = 1 << 20) -> list[tuple[str, str]]:
        def chunks() -> Iterable[bytes]:
            with open(path, "rb") as f:
                while data := f.read(chunk):
                    yield data
        return self.import_stream(chunks())

    def images(self) -> list[Image]:
        return parse_images(self._run("images", "ls"))

    def containers(self) -> list[Container]:
        out = self._run("containers", "ls")
        rows = out.splitlines()[1:]
        return [Container(*row.split()[:3]) for row in rows if len(row.split()) >= 3]


def parse_images(text: str) -> list[Image]:
    """``ctr images ls``: REF TYPE DIGEST SIZE(two words) PLATFORMS LABELS."""
    images = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 6:
            continue
        ref, media_type, digest, number, unit, platforms = parts[:6]
        try:
            size = int(float(number) * SIZE_UNITS[unit])
        except (ValueError, KeyError):
            raise ImageError(f"ctr images ls: cannot read the size {number} {unit!r}") from None
        images.append(Image(ref, media_type, digest, size, tuple(platforms.split(","))))
    return images
