"""Images in containerd's ``k8s.io`` namespace: import an archive as it streams, and list them.

The importer does over containerd's gRPC API what ``ctr images import`` does,
without ``ctr`` on the node: under a lease (so garbage collection spares a
half-done import, and takes it back if we fail), every blob is written to the
content store as the tar streams past (``archive.read_archive``), the plan's
GC labels tie indexes -> manifests -> configs and layers, each layer is
applied by the diff service onto an overlayfs snapshot named by its chain ID,
the config is labelled with the top snapshot, and the image records are
created (or moved to the new target). Then the kubelet's CRI can run it.
Blocking: apid runs it in a worker thread. PID 1 never imports this module.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

from talos_init.containerd import archive as oci
from talos_init.containerd import grpc
from talos_init.containerd.archive import ArchiveError, Descriptor, Member
from talos_init.containerd.grpc import (ALREADY_EXISTS, NOT_FOUND, Connection, GrpcError, decode,
                                        field, field_mask, get_int, get_map, get_str, string_map)

NAMESPACE = "k8s.io"  # where the kubelet's CRI looks for images
SNAPSHOTTER = "overlayfs"
PLATFORM = "linux/amd64"
LEASE_EXPIRY = datetime.timedelta(hours=1)  # a crashed import's leftovers go to GC after this
WINDOW = 4  # write messages in flight before we wait for containerd's acknowledgements
CRI_LABEL = {"io.cri-containerd.image": "managed"}
SPACE_RESERVE = 64 << 20  # or 5% of the filesystem, whichever is more, stays free after a blob

_CONTENT = "/containerd.services.content.v1.Content/"
_SNAPSHOTS = "/containerd.services.snapshots.v1.Snapshots/"
_IMAGES = "/containerd.services.images.v1.Images/"
_LEASES = "/containerd.services.leases.v1.Leases/"
_APPLY = "/containerd.services.diff.v1.Diff/Apply"
STAT, WRITE, COMMIT = 0, 1, 2


class ImageError(Exception):
    """What failed, in words; ``bad_input`` when the archive (not the node) is at fault."""

    def __init__(self, message: str, *, bad_input: bool = False, no_space: bool = False):
        super().__init__(message)
        self.bad_input = bad_input
        self.no_space = no_space  # the node's disk, not the archive, is short


def descriptor(d: Descriptor) -> bytes:
    return field(1, d.media_type) + field(2, d.digest) + field(3, d.size)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The OCI chain IDs: the snapshot names containerd gives an image's layers."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


class _Content:
    """The content store as archive.Sink: one Write stream per blob, bounded in flight."""

    def __init__(self, conn: Connection, namespace: str, headers: dict[str, str], prefix: str,
                 store_path: str | None = None):
        self.conn, self.namespace, self.headers, self.prefix = conn, namespace, headers, prefix
        self.store_path = store_path  # containerd's root: the filesystem the blobs land on
        self.written = 0  # bytes sent to containerd
        self.skipped = 0  # blobs it had already

    def _check_space(self, member: Member) -> None:
        """Policy: refuse a blob the filesystem cannot hold with room to spare, before writing
        it; a full /var would stop the kubelet and every pod's writes."""
        if self.store_path is None:
            return
        try:
            st = os.statvfs(self.store_path)
        except OSError:
            return  # nothing to measure: containerd's own ENOSPC is the last word
        free = st.f_bavail * st.f_frsize
        reserve = max(SPACE_RESERVE, st.f_blocks * st.f_frsize // 20)
        if member.size + reserve > free:
            raise ImageError(f"{member.name}: not enough space on the filesystem of "
                             f"{self.store_path} for {member.size} bytes ({free} free, "
                             f"{reserve} kept in reserve); refused before writing", no_space=True)

    def put(self, member: Member) -> None:
        self._check_space(member)
        ref = f"{self.prefix}-{member.expected or member.name}"
        call = self.conn.open(_CONTENT + "Write", self.namespace, self.headers)
        ref_f = field(2, ref)
        stat = field(1, STAT) + ref_f + field(3, member.size)
        if member.expected:
            stat += field(4, member.expected)
        try:
            call.send(stat)
            call.recv()
        except GrpcError as e:
            if e.status == ALREADY_EXISTS:
                self.skipped += 1
                return
            raise
        offset, in_flight = 0, 0
        try:
            for chunk in member:
                call.send(field(1, WRITE) + ref_f + field(5, offset) + field(6, chunk))
                offset += len(chunk)
                in_flight += 1
                while in_flight > WINDOW:
                    call.recv()
                    in_flight -= 1
            assert member.digest is not None
            call.send(field(1, COMMIT) + ref_f + field(3, offset) + field(4, member.digest)
                      + field(5, offset), end=True)
            call.finish()
        except GrpcError as e:
            if e.status != ALREADY_EXISTS:  # someone committed it meanwhile: fine
                self._abort(call, ref)
                raise
        except BaseException:
            self._abort(call, ref)
            raise
        self.written += offset

    def put_bytes(self, data: bytes) -> None:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.put(Member(digest, len(data), digest, iter([data])))

    def _abort(self, call: grpc.Call, ref: str) -> None:
        call.cancel()
        try:
            self.conn.unary(_CONTENT + "Abort", field(1, ref), self.namespace)
        except (GrpcError, OSError):
            pass  # no ingest left behind, or containerd is gone: nothing to clean either way


@dataclass
class Importer:
    client: grpc.Client
    namespace: str = NAMESPACE
    snapshotter: str = SNAPSHOTTER
    platform: str = PLATFORM
    store_path: str | None = None  # containerd's root, for the free-space check

    def import_archive(self, fileobj: oci.Reader,
                       budget: oci.Budget = oci.Budget()) -> list[dict[str, Any]]:
        """Import a tar (OCI layout or docker save) read sequentially from ``fileobj``."""
        with self.client.connect() as conn:
            lease = self._lease(conn)
            headers = {"containerd-lease": lease}
            try:
                content = _Content(conn, self.namespace, headers, lease, self.store_path)
                try:
                    found = oci.read_archive(fileobj, content, budget)
                    plan = oci.plan(found, self.platform)
                except ArchiveError as e:
                    raise ImageError(str(e), bad_input=True) from None
                for body in plan.new_blobs.values():
                    content.put_bytes(body)
                for digest, labels in plan.labels.items():
                    self._label(conn, digest, labels, headers)
                tops = {}
                for digest, unpack in plan.unpack.items():
                    tops[digest] = self._unpack(conn, unpack, headers)
                out = []
                for name, target in sorted(plan.images.items()):
                    self._image(conn, name, target)
                    u = plan.unpack[target.digest]
                    out.append({"name": name, "digest": target.digest, "format": plan.format,
                                "config": u.config.digest, "layers": len(u.layers),
                                "size": sum(x.size for x in u.layers) + u.config.size,
                                "snapshot": tops[target.digest]})
                return out
            finally:
                try:
                    conn.unary(_LEASES + "Delete", field(1, lease), self.namespace)
                except (GrpcError, OSError):
                    pass  # it expires by itself (LEASE_EXPIRY)

    def _lease(self, conn: Connection) -> str:
        lease = f"talos-import-{secrets.token_hex(8)}"
        expire = (datetime.datetime.now(datetime.UTC) + LEASE_EXPIRY)
        conn.unary(_LEASES + "Create", field(1, lease) + string_map(
            3, {"containerd.gc.expire": expire.strftime("%Y-%m-%dT%H:%M:%SZ")}), self.namespace)
        return lease

    def _label(self, conn: Connection, digest: str, labels: dict[str, str],
               headers: dict[str, str]) -> None:
        info = field(1, digest) + string_map(5, labels)
        conn.unary(_CONTENT + "Update", field(1, info) + field_mask(2, [f"labels.{k}" for k in labels]),
                   self.namespace, headers)

    def _snapshot_exists(self, conn: Connection, key: str) -> bool:
        try:
            conn.unary(_SNAPSHOTS + "Stat", field(1, self.snapshotter) + field(2, key), self.namespace)
            return True
        except GrpcError as e:
            if e.status == NOT_FOUND:
                return False
            raise

    def _unpack(self, conn: Connection, u: oci.Unpack, headers: dict[str, str]) -> str:
        """Apply each layer onto its parent's snapshot; returns the top chain ID."""
        chain = chain_ids(u.diff_ids)
        for i, (layer, diff_id, chain_id) in enumerate(zip(u.layers, u.diff_ids, chain, strict=True)):
            if self._snapshot_exists(conn, chain_id):
                continue
            parent = chain[i - 1] if i else ""
            key = f"extract-{secrets.token_hex(6)} {chain_id}"
            sn = field(1, self.snapshotter)
            prepared = decode(conn.unary(_SNAPSHOTS + "Prepare",
                                         sn + field(2, key) + field(3, parent), self.namespace,
                                         headers))
            try:
                applied = conn.unary(_APPLY, field(1, descriptor(layer)) + b"".join(
                    field(2, m) for m in prepared.get(1, [])), self.namespace, headers)
                got = get_str(decode(decode(applied).get(1, [b""])[-1]), 2)
                if got != diff_id:
                    raise ImageError(f"layer {i} ({layer.digest}) unpacks to {got}, but config "
                                     f"{u.config.digest} says rootfs.diff_ids[{i}] is {diff_id}",
                                     bad_input=True)
                try:
                    conn.unary(_SNAPSHOTS + "Commit", sn + field(2, chain_id) + field(3, key),
                               self.namespace, headers)
                except GrpcError as e:
                    if e.status != ALREADY_EXISTS:  # another import got there first
                        raise
                    conn.unary(_SNAPSHOTS + "Remove", sn + field(2, key), self.namespace)
            except BaseException:
                try:
                    conn.unary(_SNAPSHOTS + "Remove", sn + field(2, key), self.namespace)
                except (GrpcError, OSError):
                    pass
                raise
        top = chain[-1]
        self._label(conn, u.config.digest, {f"containerd.io/gc.ref.snapshot.{self.snapshotter}": top},
                    headers)
        return top

    def _image(self, conn: Connection, name: str, target: Descriptor) -> None:
        image = field(1, name) + string_map(2, CRI_LABEL) + field(3, descriptor(target))
        try:
            conn.unary(_IMAGES + "Create", field(1, image), self.namespace)
        except GrpcError as e:
            if e.status != ALREADY_EXISTS:
                raise
            conn.unary(_IMAGES + "Update", field(1, image) + field_mask(
                2, ["target", *(f"labels.{k}" for k in CRI_LABEL)]), self.namespace)

    # -- listing -------------------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Images with target digest, platform(s) and size (manifest + config + layers)."""
        with self.client.connect() as conn:
            listed = decode(conn.unary(_IMAGES + "List", b"", self.namespace))
            out = []
            for raw in listed.get(1, []):
                img = decode(raw)
                target = decode(img[3][-1]) if img.get(3) else {}
                d = Descriptor(get_str(target, 1), get_str(target, 2), get_int(target, 3))
                created = decode(img[7][-1]) if img.get(7) else {}
                row: dict[str, Any] = {
                    "name": get_str(img, 1), "digest": d.digest, "media_type": d.media_type,
                    "created": get_int(created, 1) or None, "labels": get_map(img, 2)}
                try:
                    row.update(self._measure(conn, d))
                except (GrpcError, ValueError, KeyError, TypeError) as e:
                    row.update({"size": None, "platforms": [], "error": str(e)})
                out.append(row)
            return sorted(out, key=lambda r: r["name"])

    def _read_json(self, conn: Connection, digest: str) -> Any:
        data = bytearray()
        for msg in conn.server_stream(_CONTENT + "Read", field(1, digest), self.namespace):
            data += decode(msg).get(2, [b""])[-1]
            if len(data) > oci.META_MAX:
                raise ValueError(f"{digest} is over {oci.META_MAX} bytes: not a manifest")
        return json.loads(data)

    def _measure(self, conn: Connection, d: Descriptor) -> dict[str, Any]:
        doc = self._read_json(conn, d.digest)
        size = d.size
        if "manifests" in doc:  # an index: list its platforms, size ours
            pairs = [(m, oci.platform_of(m.get("platform"))) for m in doc["manifests"]]
            platforms = [p for _, p in pairs if p != "unknown/unknown"]
            ours = next((m for m, p in pairs if p == self.platform), None)
            if ours is None:
                return {"size": size, "platforms": platforms}
            size += ours["size"]
            doc = self._read_json(conn, ours["digest"])
        else:
            cfg = self._read_json(conn, doc["config"]["digest"])
            platforms = [oci.platform_of(cfg)]
        size += doc["config"]["size"] + sum(x["size"] for x in doc.get("layers", []))
        return {"size": size, "platforms": platforms}
