"""Image archives are read front to back, planned, and refused with errors naming what is wrong."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

import pytest

from talos_init.containerd.archive import (CHUNK, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST,
                                           OCI_INDEX, ArchiveError, Member, normalize, plan, read_archive)
from tests.ociimage import members, sha256, tar_bytes

BINARY = b"\x7fELF not really, but the archive code does not care" * 100


class DictSink:
    """A content store in a dict; records the chunk sizes it was handed."""

    def __init__(self, have: set[str] = frozenset()):
        self.blobs: dict[str, bytes] = {}
        self.chunks: list[int] = []
        self.have = set(have)

    def put(self, member: Member) -> None:
        if member.expected in self.have:
            return
        data = bytearray()
        for chunk in member:
            self.chunks.append(len(chunk))
            data += chunk
        self.blobs[member.digest] = bytes(data)


def run(files: dict[str, bytes], sink: DictSink | None = None, platform: str = "linux/amd64"):
    sink = sink or DictSink()
    return plan(read_archive(io.BytesIO(tar_bytes(files)), sink), platform), sink


def blob_key(files: dict[str, bytes], needle: bytes) -> str:
    return next(k for k, v in files.items() if k.startswith("blobs/") and needle in v)


def test_oci_layout_is_planned_with_gc_labels_and_unpack():
    files = members("example.local/app:1", BINARY)
    p, sink = run(files)
    manifest = blob_key(files, b'"schemaVersion"')
    target = p.images["example.local/app:1"]
    assert target.digest == "sha256:" + manifest.rsplit("/", 1)[1] and p.format == "oci"
    u = p.unpack[target.digest]
    assert u.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert p.labels[target.digest] == {"containerd.io/gc.ref.content.config": u.config.digest,
                                       "containerd.io/gc.ref.content.l.0": u.layers[0].digest}
    assert set(sink.blobs) == {sha256(files[k]) for k in files if k.startswith("blobs/")}
    assert p.new_blobs == {}


@pytest.mark.parametrize("compress,media", [(False, DOCKER_LAYER), (True, DOCKER_LAYER_GZIP)])
def test_docker_save_gets_a_schema2_manifest(compress, media):
    files = members("busybox", BINARY, fmt="docker", compress=compress)
    p, sink = run(files)
    (name, target), = p.images.items()
    assert name == "docker.io/library/busybox:latest" and p.format == "docker"
    manifest = json.loads(p.new_blobs[target.digest])
    assert manifest["mediaType"] == target.media_type == DOCKER_MANIFEST
    assert manifest["layers"][0]["mediaType"] == media
    assert manifest["layers"][0]["digest"] == sha256(next(v for k, v in files.items()
                                                          if k.endswith("layer.tar")))
    assert not any(k.endswith("/json") or k.endswith("/VERSION") for k in sink.blobs)
    # Same archive, same synthesized manifest: a re-import finds the same digest.
    assert run(files)[0].images == p.images


def test_docker_layer_given_as_a_symlink_resolves():
    """docker save links a layer it already wrote; the link resolves to the blob."""
    files = members("example.local/x:1", BINARY, fmt="docker")
    layer = next(k for k in files if k.endswith("layer.tar"))
    entry = json.loads(files["manifest.json"])
    entry[0]["Layers"] = ["other/layer.tar"]
    files["manifest.json"] = json.dumps(entry).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("other/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, f"../{layer}"
        tar.addfile(link)
    p = plan(read_archive(io.BytesIO(buf.getvalue()), DictSink()))
    (target,) = p.images.values()
    assert p.unpack[target.digest].layers[0].digest == sha256(files[layer])


def test_a_compressed_archive_and_big_members_stream_in_chunks():
    """A .tar.gz is accepted; a member above CHUNK reaches the sink in pieces, never whole."""
    files = members("example.local/big:1", BINARY, compress=False, extra={"data": b"x" * (5 * CHUNK)})
    sink = DictSink()
    p = plan(read_archive(io.BytesIO(gzip.compress(tar_bytes(files))), sink))
    assert p.images and max(sink.chunks) <= CHUNK and len(sink.chunks) > 4


def test_blobs_the_store_has_are_not_sent_again():
    files = members("example.local/app:1", BINARY)
    layer = blob_key(files, b"\x1f\x8b")
    sink = DictSink(have={sha256(files[layer])})
    p, _ = run(files, sink)
    assert sha256(files[layer]) not in sink.blobs and p.images


@pytest.mark.parametrize("ref,want", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("someone/tool:v2", "docker.io/someone/tool:v2"),
    ("index.docker.io/someone/tool", "docker.io/someone/tool:latest"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/a/b:c", "localhost:5000/a/b:c"),
    ("ghcr.io/o/r@sha256:" + "a" * 64, "ghcr.io/o/r@sha256:" + "a" * 64),
])
def test_names_are_normalised_like_containerd(ref, want):
    assert normalize(ref) == want


@pytest.mark.parametrize("ref", ["Busybox", "a b", "x:", "registry.io/UPPER:1", ""])
def test_bad_names_are_refused(ref):
    with pytest.raises(ArchiveError, match="not a valid image reference"):
        normalize(ref)


# -- refusals ----------------------------------------------------------------------------------

def refused(data: bytes, match: str) -> None:
    with pytest.raises(ArchiveError, match=match):
        plan(read_archive(io.BytesIO(data), DictSink()))


def test_not_a_tar():
    refused(b"this is not a tar archive, just words\n" * 100, "not a tar archive")


def test_truncated_inside_a_blob():
    data = tar_bytes(members("example.local/app:1", BINARY + b"y" * 200000, compress=False))
    cut = data.index(BINARY[:40]) + 5000
    refused(data[:cut], r"blobs/sha256/[0-9a-f]{64}: the archive ends")


def test_truncated_before_the_index_names_what_is_missing():
    files = members("example.local/app:1", BINARY)
    del files["index.json"]
    refused(tar_bytes(files), r"no index.json \(OCI image layout\) nor manifest.json")


def test_digest_mismatch_names_the_blob():
    files = members("example.local/app:1", BINARY, compress=False)
    layer = blob_key(files, BINARY[:40])
    files[layer] = files[layer].replace(BINARY[:40], BINARY[:39] + b"!")
    refused(tar_bytes(files), f"{layer}: content digest is sha256:[0-9a-f]+, not the sha256:")


def test_missing_layer_is_named():
    files = members("example.local/app:1", BINARY)
    layer = blob_key(files, b"\x1f\x8b")
    del files[layer]
    refused(tar_bytes(files), rf"manifest sha256:\w+ layers\[0\] names sha256:{layer[13:]}, "
                              "which is not in the archive")


def test_wrong_platform_config_is_refused():
    refused(tar_bytes(members("example.local/app:1", BINARY, arch="arm64")),
            r"index.json manifests\[0\]: image is for linux/arm64; this node runs linux/amd64")


def test_config_platform_checked_when_the_index_says_none():
    files = members("example.local/app:1", BINARY, fmt="docker", arch="arm64")
    refused(tar_bytes(files), r"manifest.json\[0\]: image is for linux/arm64; this node runs "
                              "linux/amd64")


def test_unnamed_images_are_refused_with_the_fix():
    files = members("example.local/app:1", BINARY)
    index = json.loads(files["index.json"])
    del index["manifests"][0]["annotations"]
    files["index.json"] = json.dumps(index).encode()
    refused(tar_bytes(files), "names no image: give its index.json entries an "
                              "org.opencontainers.image.ref.name")


def test_diff_ids_must_match_layers():
    files = members("example.local/app:1", BINARY)
    config_key = blob_key(files, b"rootfs")
    config = json.loads(files[config_key])
    config["rootfs"]["diff_ids"] = []
    new = json.dumps(config).encode()
    del files[config_key]
    files[f"blobs/sha256/{sha256(new)[7:]}"] = new
    manifest_key = blob_key(files, b'"schemaVersion"')
    manifest = json.loads(files[manifest_key])
    manifest["config"].update(digest=sha256(new), size=len(new))
    new_manifest = json.dumps(manifest).encode()
    del files[manifest_key]
    files[f"blobs/sha256/{sha256(new_manifest)[7:]}"] = new_manifest
    index = json.loads(files.pop("index.json"))
    index["manifests"][0].update(digest=sha256(new_manifest), size=len(new_manifest))
    files["index.json"] = json.dumps(index).encode()
    refused(tar_bytes(files), r"rootfs.diff_ids must list one sha256 digest per layer \(1 layers\)")


def test_bad_json_in_index():
    files = members("example.local/app:1", BINARY)
    files["index.json"] = b"{not json"
    refused(tar_bytes(files), "index.json: not valid JSON")


def test_a_blob_path_that_is_not_a_digest():
    files = members("example.local/app:1", BINARY)
    files["blobs/md5/abc"] = b"x"
    refused(tar_bytes(files), r"blobs/md5/abc: not a sha256 blob path")


def nested(files: dict[str, bytes], arch: str) -> str:
    """Put the manifest behind a multi-platform index blob that claims ``arch``; its digest."""
    entry = json.loads(files.pop("index.json"))["manifests"][0]
    inner = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**{k: entry[k] for k in ("mediaType", "digest", "size")},
         "platform": {"os": "linux", "architecture": arch}},
        {"mediaType": entry["mediaType"], "digest": "sha256:" + "0" * 64, "size": 1,
         "platform": {"os": "unknown", "architecture": "unknown"}}]}).encode()
    files[f"blobs/sha256/{sha256(inner)[7:]}"] = inner
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": sha256(inner), "size": len(inner),
         "annotations": entry["annotations"]}]}).encode()
    return sha256(inner)


def test_a_multi_platform_index_picks_ours_and_labels_only_present_children():
    files = members("example.local/app:1", BINARY)
    inner = nested(files, "amd64")
    p, _ = run(files)
    assert p.images["example.local/app:1"].digest == inner
    assert list(p.labels[inner]) == ["containerd.io/gc.ref.content.m.0"]  # the absent one skipped
    assert p.unpack[inner].layers


def test_an_index_without_our_platform_lists_what_it_has():
    files = members("example.local/app:1", BINARY)
    inner = nested(files, "arm64")
    refused(tar_bytes(files), rf"no linux/amd64 image in index {inner} \(platforms: linux/arm64\)")


@pytest.mark.parametrize("named_index", [True, False])
def test_docker_25_archives_carry_both_layouts(named_index):
    """Newer docker save writes an OCI layout plus manifest.json over the same blobs: the named
    index wins; an unnamed one falls back to manifest.json's RepoTags."""
    files = members("docker.io/library/both:1", BINARY, compress=False)
    config = blob_key(files, b"rootfs")
    layer = blob_key(files, BINARY[:40])
    files["manifest.json"] = json.dumps([{"Config": config, "RepoTags": ["both:1"],
                                          "Layers": [layer]}]).encode()
    if not named_index:
        index = json.loads(files["index.json"])
        del index["manifests"][0]["annotations"]
        files["index.json"] = json.dumps(index).encode()
    p, _ = run(files)
    (name, target), = p.images.items()
    assert name == "docker.io/library/both:1"
    assert p.format == ("oci" if named_index else "docker")
    assert p.unpack[target.digest].layers[0].digest == sha256(files[layer])
    assert bool(p.new_blobs) is not named_index


def test_a_gzip_layer_the_store_already_has_keeps_its_media_type():
    """docker save with a gzip layer at a blob path: skipped by the sink, still typed gzip."""
    files = members("example.local/gz:1", BINARY + os.urandom(5 * CHUNK), compress=True)
    config, layer = blob_key(files, b"rootfs"), blob_key(files, b"\x1f\x8b")
    files["manifest.json"] = json.dumps([{"Config": config, "RepoTags": ["gz:1"],
                                          "Layers": [layer]}]).encode()
    index = json.loads(files["index.json"])
    del index["manifests"][0]["annotations"]
    files["index.json"] = json.dumps(index).encode()
    p, sink = run(files, DictSink(have={sha256(files[layer])}))
    (target,) = p.images.values()
    assert p.unpack[target.digest].layers[0].media_type == DOCKER_LAYER_GZIP
    assert sha256(files[layer]) not in sink.blobs
