"""Image archives are imported into the real containerd over its gRPC API, unpacked and listed."""

from __future__ import annotations

import hashlib
import io
import json
import time

import pytest

from talos_init.containerd import grpc
from talos_init.containerd.grpc import decode, field, get_map, get_str
from talos_init.containerd.images import NAMESPACE, ImageError, Importer, _Content, chain_ids
from tests.ociimage import HELLO_C, compile_static, members, tar_bytes


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return compile_static(HELLO_C, tmp_path_factory.mktemp("bin") / "hello").read_bytes()


def importer(socket) -> Importer:
    return Importer(grpc.Client(str(socket), timeout=120))


def snapshot(client: grpc.Client, key: str) -> dict:
    info = decode(decode(client.call("/containerd.services.snapshots.v1.Snapshots/Stat",
                                     field(1, "overlayfs") + field(2, key), NAMESPACE))[1][-1])
    return {"name": get_str(info, 1), "parent": get_str(info, 2), "kind": info.get(3, [0])[-1]}


def content_labels(client: grpc.Client, digest: str) -> dict[str, str]:
    info = decode(decode(client.call("/containerd.services.content.v1.Content/Info",
                                     field(1, digest), NAMESPACE))[1][-1])
    return get_map(info, 5)


def wait_collected(client: grpc.Client, digest: str, timeout: float = 30) -> None:
    """Until containerd's GC has removed ``digest`` from the content store."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            content_labels(client, digest)
        except grpc.GrpcError as e:
            if e.status == grpc.NOT_FOUND:
                return
            raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{digest} still in the content store {timeout} s after the GC")
        time.sleep(0.1)


@pytest.mark.parametrize("fmt,compress", [("oci", True), ("oci", False), ("docker", False),
                                          ("docker", True)])
def test_archive_is_imported_unpacked_and_listed(containerd, binary, fmt, compress):
    """Blobs, GC labels, the unpacked snapshot chain and the image record all exist afterwards."""
    files = members("example.local/talos/hello:1", binary, fmt=fmt, compress=compress)
    archive = tar_bytes(files)
    imp = importer(containerd)
    (got,) = imp.import_archive(io.BytesIO(archive))
    assert got["name"] == "example.local/talos/hello:1" and got["format"] == fmt
    config = json.loads(next(v for k, v in files.items() if k.endswith(".json") and b"rootfs" in v
                             or k.startswith("blobs/") and b"rootfs" in v))
    (top,) = chain_ids(config["rootfs"]["diff_ids"])
    assert got["snapshot"] == top
    snap = snapshot(imp.client, top)
    assert snap["name"] == top and snap["kind"] == 3  # committed
    assert content_labels(imp.client, got["config"]) == {
        "containerd.io/gc.ref.snapshot.overlayfs": top}
    manifest_labels = content_labels(imp.client, got["digest"])
    assert manifest_labels["containerd.io/gc.ref.content.config"] == got["config"]
    assert set(manifest_labels) == {"containerd.io/gc.ref.content.config",
                                    "containerd.io/gc.ref.content.l.0"}
    (row,) = imp.list()
    assert row["name"] == "example.local/talos/hello:1" and row["digest"] == got["digest"]
    assert row["platforms"] == ["linux/amd64"] and row["size"] > len(binary) // 4
    assert row["labels"] == {"io.cri-containerd.image": "managed"}
    other = Importer(imp.client, namespace="default")
    assert other.list() == []  # imported where the kubelet's CRI looks, nowhere else


def test_reimport_is_idempotent_and_gc_keeps_the_image(containerd, binary):
    """A second import changes nothing; after a GC pass every blob and snapshot is still there."""
    archive = tar_bytes(members("hello", binary))
    imp = importer(containerd)
    first = imp.import_archive(io.BytesIO(archive))
    second = imp.import_archive(io.BytesIO(archive))
    assert first == second and first[0]["name"] == "docker.io/library/hello:latest"
    assert [r["name"] for r in imp.list()] == ["docker.io/library/hello:latest"]
    # A GC pass: if our labels were wrong, content and snapshots would be collected now. A blob
    # held only by the deleted lease is the proof that the pass ran.
    orphan = b"held only by the gc-trigger lease"
    orphan_digest = "sha256:" + hashlib.sha256(orphan).hexdigest()
    imp.client.call("/containerd.services.leases.v1.Leases/Create", field(1, "gc-trigger"), NAMESPACE)
    with imp.client.connect() as conn:
        _Content(conn, NAMESPACE, {"containerd-lease": "gc-trigger"}, "gc-trigger").put_bytes(orphan)
    assert content_labels(imp.client, orphan_digest) == {}  # there before the pass
    imp.client.call("/containerd.services.leases.v1.Leases/Delete",
                    field(1, "gc-trigger") + field(2, 1), NAMESPACE)  # sync: GC before replying
    wait_collected(imp.client, orphan_digest)
    assert snapshot(imp.client, first[0]["snapshot"])["kind"] == 3
    assert content_labels(imp.client, first[0]["config"])


def test_a_failed_import_leaves_no_image(containerd, binary):
    """A digest mismatch in the last blob: a clear error, no image record, containerd fine."""
    files = members("example.local/broken:1", binary, compress=False)
    layer = next(k for k in files if k.startswith("blobs/") and len(files[k]) > 10000)
    files[layer] = files[layer][:-1] + b"X"
    imp = importer(containerd)
    with pytest.raises(ImageError, match=f"{layer}: content digest is sha256:.*corrupt") as e:
        imp.import_archive(io.BytesIO(tar_bytes(files)))
    assert e.value.bad_input
    assert imp.list() == []


def test_large_layer_streams_in_bounded_chunks(containerd, binary):
    """A 40 MiB layer goes through HTTP/2 flow control in 1 MiB messages; figures printed."""
    import os

    import tracemalloc

    files = members("example.local/big:1", binary, compress=False,
                    extra={"data": os.urandom(40 << 20)})
    archive = tar_bytes(files)
    tracemalloc.start()
    t0 = time.monotonic()
    (got,) = importer(containerd).import_archive(io.BytesIO(archive))
    elapsed = time.monotonic() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"\nimport of {len(archive) / 2**20:.1f} MiB: {elapsed:.2f} s "
          f"({len(archive) / 2**20 / elapsed:.1f} MiB/s), python peak {peak / 2**20:.1f} MiB")
    assert got["layers"] == 1
    assert peak < 16 << 20  # the whole 40 MiB is never held (tracemalloc counts our allocations)


def test_the_kubelets_cri_sees_the_imported_image(containerd, binary):
    """CRI's ImageService (what the kubelet asks) reports the image by name, id = config digest,
    and calls it unpacked enough to report a size."""
    imp = importer(containerd)
    (got,) = imp.import_archive(io.BytesIO(tar_bytes(members("example.local/cri:1", binary))))
    spec = field(1, field(1, "example.local/cri:1"))  # ImageStatusRequest{image: ImageSpec{image}}
    deadline = time.monotonic() + 20
    image: dict = {}
    while time.monotonic() < deadline:  # CRI learns of new images from containerd's events
        reply = decode(imp.client.call("/runtime.v1.ImageService/ImageStatus", spec, NAMESPACE))
        if reply.get(1):
            image = decode(reply[1][-1])
            break
        time.sleep(0.2)
    assert image, "CRI never reported the image"
    assert get_str(image, 1) == got["config"]
    assert [t.decode() for t in image.get(2, [])] == ["example.local/cri:1"]
    assert image.get(4, [0])[-1] > 0  # size


def test_a_new_archive_under_the_same_name_moves_the_image(containerd, binary):
    """Importing another image with a name that exists points the name at the new manifest."""
    imp = importer(containerd)
    (old,) = imp.import_archive(io.BytesIO(tar_bytes(members("example.local/moving:1", binary))))
    (new,) = imp.import_archive(io.BytesIO(tar_bytes(
        members("example.local/moving:1", binary, extra={"version": b"2"}))))
    assert old["digest"] != new["digest"]
    assert [(r["name"], r["digest"]) for r in imp.list()] == [("example.local/moving:1",
                                                                new["digest"])]
