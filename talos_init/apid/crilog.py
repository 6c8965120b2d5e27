"""Logs of Kubernetes (CRI) containers: where containerd's CRI keeps them, and their line format.

CRI writes a container's output to the file the kubelet asked for
(/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log) and records that path in
the container's ``io.cri-containerd.container.metadata`` extension (JSON in a
protobuf Any). Each line is ``<RFC3339Nano> <stdout|stderr> <P|F> <text>``; P
marks a partial line continued by the next record of the same stream. Reads
are bounded: at most READ_LIMIT bytes from the end of the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from talos_init.apid.containerd import Client, decode, field

NAMESPACE = "k8s.io"
METADATA = "io.cri-containerd.container.metadata"
READ_LIMIT = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024
MAX_LINE = 1024 * 1024  # a partial line longer than this is shown in pieces


class CriLogError(Exception):
    pass


def resolve(client: Client, ref: str) -> dict[str, Any]:
    """The k8s.io container named by ``ref``: its id, a unique id prefix, or <pod>/<container>."""
    containers = client.containers(NAMESPACE)
    exact = [c for c in containers if c["id"] == ref]
    if exact:
        return exact[0]
    pod, _, name = ref.partition("/")
    found = [c for c in containers if c["id"].startswith(ref)] or [
        c for c in containers if name and c.get("pod") == pod
        and c["labels"].get("io.kubernetes.container.name") == name]
    if len(found) == 1:
        return found[0]
    if not found:
        raise CriLogError(f"no Kubernetes container {ref!r} (see osctl containers -k)")
    raise CriLogError(f"{ref!r} names {len(found)} containers: "
                      + ", ".join(c["id"][:13] for c in found[:5]))


def log_path(client: Client, cid: str) -> str:
    """The log file CRI writes for container ``cid`` (from its metadata extension)."""
    reply = decode(client.call("/containerd.services.containers.v1.Containers/Get",
                               field(1, cid), NAMESPACE))
    container = decode(reply[1][-1]) if reply.get(1) else {}
    for entry in container.get(10, []):
        kv = decode(entry)
        if kv.get(1, [b""])[-1].decode() != METADATA or not kv.get(2):
            continue
        value = decode(kv[2][-1]).get(2, [b"{}"])[-1]
        try:
            path = json.loads(value)["Metadata"]["LogPath"]
        except (ValueError, KeyError, TypeError) as e:
            raise CriLogError(f"container {cid[:13]}: CRI metadata not understood: {e}") from None
        if path:
            return str(path)
    raise CriLogError(f"container {cid[:13]} has no CRI log path (a sandbox, or not made by "
                      "the kubelet)")


def parse(line: bytes) -> tuple[str, str, bool, str] | None:
    """(time, stream, full, text) of one CRI log record; None for a line not in that format."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"P", b"F"):
        return None
    text = parts[3] if len(parts) == 4 else b""
    return (parts[0].decode(errors="replace"), parts[1].decode(), parts[2] == b"F",
            text.decode(errors="replace"))


class Joiner:
    """Records -> messages: P records are held per stream and joined with the F that ends them."""

    def __init__(self) -> None:
        self.partial: dict[str, list[str]] = {}

    def feed(self, line: bytes) -> Iterator[dict[str, Any]]:
        rec = parse(line)
        if rec is None:
            text = line.rstrip(b"\n").decode(errors="replace")
            yield {"t": None, "stream": None, "line": text}
            return
        t, stream, full, text = rec
        held = self.partial.setdefault(stream, [])
        held.append(text)
        if full or sum(map(len, held)) > MAX_LINE:
            self.partial[stream] = []
            yield {"t": t, "stream": stream, "line": "".join(held)}


def read_tail(path: str, tail: int | None) -> tuple[list[dict[str, Any]], int, Joiner]:
    """The last ``tail`` messages (all within READ_LIMIT when None), the offset read up to, and
    the joiner holding partial records (for following on from there)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = max(0, size - READ_LIMIT)
        f.seek(start)
        data = f.read(size - start)
    lines = data.split(b"\n")
    rest = lines.pop()  # after the last newline: a record still being written
    if start:
        lines = lines[1:]  # the first one was cut by the limit
    joiner = Joiner()
    out = [m for line in lines for m in joiner.feed(line)]
    if tail is not None:
        out = out[-tail:] if tail else []
    return out, size - len(rest), joiner
