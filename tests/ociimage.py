"""Tiny container images for tests: one static binary, no shell, reproducible bytes.

    from tests.ociimage import build_image
    build_image(tmp / "hello.tar", "example.local/hello:1", source_c=HELLO_C)

compiles the C program with ``gcc -static`` (Debian's gcc + libc6-dev) and
writes an image archive holding one layer with the binary at ``/app``:
``fmt="oci"`` an OCI image layout (index.json named with both the
``io.containerd.image.name`` and ``org.opencontainers.image.ref.name``
annotations), ``fmt="docker"`` the classic ``docker save`` layout
(manifest.json + config + ``<id>/layer.tar``). Same inputs, same bytes: every
timestamp is 0 and owners are root. ``members`` gives the archive's files
before they are tarred, for tests that break them on purpose.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

HELLO_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    printf("hello from a static binary, pid %d\n", (int)getpid());
    for (int i = 1; i < argc; i++) printf("arg %s\n", argv[i]);
    return 0;
}
"""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compile_static(source_c: str, out: Path) -> Path:
    """``gcc -static -Os -s``: a binary that needs nothing from the image."""
    with tempfile.TemporaryDirectory(prefix="ociimage-") as tmp:
        src = Path(tmp) / "main.c"
        src.write_text(source_c)
        r = subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(out), str(src)],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"gcc failed (needs gcc and libc6-dev):\n{r.stderr}")
    return out


def tar_bytes(files: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    """A tar of ``files`` in the given order, parents first, times 0, owner root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name, data in files.items():
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d + "/")
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            info.mode = (modes or {}).get(name, 0o644)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def members(ref: str, binary: bytes, *, entrypoint: list[str] | None = None, fmt: str = "oci",
            compress: bool = True, arch: str = "amd64",
            extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """The archive's files, in the order they are written (``extra``: more files in the layer)."""
    layer_tar = tar_bytes({"app": binary, **(extra or {})}, {"app": 0o755})
    layer = gzip.compress(layer_tar, mtime=0) if compress else layer_tar
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": entrypoint or ["/app"], "Env": ["PATH=/"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
    }, sort_keys=True).encode()
    if fmt == "docker":
        layer_id = sha256(layer_tar)[7:]
        return {f"{layer_id}/VERSION": b"1.0", f"{layer_id}/json": b"{}",
                f"{layer_id}/layer.tar": layer, f"{sha256(config)[7:]}.json": config,
                "manifest.json": json.dumps([{"Config": f"{sha256(config)[7:]}.json",
                                              "RepoTags": [ref],
                                              "Layers": [f"{layer_id}/layer.tar"]}]).encode(),
                "repositories": b"{}"}
    if fmt != "oci":
        raise ValueError(f"fmt must be 'oci' or 'docker', not {fmt!r}")
    layer_type = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": sha256(layer), "size": len(layer)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sha256(manifest), "size": len(manifest),
                       "platform": {"architecture": arch, "os": "linux"},
                       "annotations": {"io.containerd.image.name": ref,
                                       "org.opencontainers.image.ref.name": ref}}],
    }, sort_keys=True).encode()
    blobs = {f"blobs/sha256/{sha256(b)[7:]}": b for b in (layer, config, manifest)}
    return {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', **blobs, "index.json": index}


def build_image(out: Path, ref: str, *, source_c: str | None = None, binary: Path | None = None,
                entrypoint: list[str] | None = None, fmt: str = "oci",
                compress: bool = True) -> Path:
    """Write the image archive to ``out``: the binary (or the compiled source) at /app."""
    if (source_c is None) == (binary is None):
        raise ValueError("give exactly one of source_c and binary")
    if source_c is not None:
        binary = compile_static(source_c, out.with_suffix(".bin"))
    assert binary is not None
    files = members(ref, binary.read_bytes(), entrypoint=entrypoint, fmt=fmt, compress=compress)
    out.write_bytes(tar_bytes(files))
    return out
