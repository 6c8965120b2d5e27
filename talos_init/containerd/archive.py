"""Image archives read as they stream: OCI image layouts and ``docker save`` tars.

``read_archive`` walks the tar once, front to back: every blob goes to a
``Sink`` (the content store) while its digest is computed and checked, and
only the small JSON files (index, manifests, configs) stay in memory. Then
``plan`` decides, without I/O, what containerd must be told: which names point
at which manifests, which manifest to unpack for the node's platform, the GC
labels that keep children alive, and the docker schema2 manifests that
``docker save`` archives lack (synthesized as containerd's importer does).
Every error names the file or digest at fault.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

CHUNK = 1 << 20
META_MAX = 4 << 20  # a JSON file bigger than this is not image metadata we keep
META_TOTAL = 32 << 20  # all kept JSON together
MAX_MEMBERS = 100_000
MAX_EXTENDED_HEADER = 1 << 20  # a pax or GNU long-name header: a path and a few attributes

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
# What containerd's diff service can apply (compression from the media type).
LAYER_TYPES = re.compile(
    r"^application/vnd\.(oci\.image\.layer(\.nondistributable)?\.v1\.tar(\+gzip|\+zstd)?"
    r"|docker\.image\.rootfs\.(foreign\.)?diff\.tar(\.gzip)?)$")

NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
GC_CONTENT = "containerd.io/gc.ref.content."
METADATA = ("oci-layout", "index.json", "manifest.json", "repositories")


class ArchiveError(Exception):
    pass


@dataclass(frozen=True)
class Budget:
    """What an archive may cost beyond its bytes on the wire, which compression can hide."""

    max_bytes: int = 16 << 30  # the tar itself, uncompressed
    max_ratio: int = 50  # tar bytes per compressed byte read, once past ratio_grace
    ratio_grace: int = 64 << 20  # small archives of JSON may compress far better


class Reader(Protocol):
    """What an archive is read from: only ``read(n)``, front to back (a file, an upload)."""

    def read(self, n: int = -1, /) -> bytes: ...


class _Counted:
    """A file object that counts the bytes read through it (the compressed side)."""

    def __init__(self, f: Reader):
        self._f = f
        self.total = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.total += len(data)
        return data


# -- names -----------------------------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.?)+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?"
_REF = re.compile(rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
                  r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


def normalize(ref: str) -> str:
    """A reference as containerd stores it: ``busybox`` -> ``docker.io/library/busybox:latest``."""
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, remainder = first, rest
    else:
        domain, remainder = "docker.io", ref
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder.split(":")[0].split("@")[0]:
        remainder = "library/" + remainder
    m = _REF.match(f"{domain}/{remainder}")
    if m is None:
        raise ArchiveError(f"{ref!r} is not a valid image reference")
    name = f"{m['domain']}/{m['path']}"
    if m["digest"]:
        return f"{name}@{m['digest']}"  # a digest pins it: a tag beside it says nothing more
    return f"{name}:{m['tag'] or 'latest'}"


# -- reading the tar ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class Member:
    """A tar member's data in chunks, hashed as it is read; ``digest`` once read to the end."""

    def __init__(self, name: str, size: int, expected: str | None, chunks: Iterator[bytes]):
        self.name, self.size, self.expected = name, size, expected
        self._chunks = chunks
        self.digest: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        h = hashlib.sha256()
        got = 0
        for chunk in self._chunks:
            h.update(chunk)
            got += len(chunk)
            yield chunk
        if got != self.size:
            raise ArchiveError(f"{self.name}: the archive ends after {got} of its {self.size} bytes "
                               "(truncated)")
        self.digest = "sha256:" + h.hexdigest()
        if self.expected and self.digest != self.expected:
            raise ArchiveError(f"{self.name}: content digest is {self.digest}, not the "
                               f"{self.expected} its name says (corrupt archive)")


class Sink(Protocol):
    def put(self, member: Member) -> None:
        """Store the member's data (iterate it to the end), or skip it if already stored."""


@dataclass
class Archive:
    files: dict[str, Descriptor] = field(default_factory=dict)  # path -> digest, size (media unset)
    heads: dict[str, bytes] = field(default_factory=dict)  # path -> first bytes
    links: dict[str, str] = field(default_factory=dict)  # path -> path it stands for
    json: dict[str, bytes] = field(default_factory=dict)  # digest or metadata path -> bytes
    digests: dict[str, int] = field(default_factory=dict)  # every blob seen -> its size

    def path(self, name: str) -> Descriptor | None:
        for _ in range(16):  # links to links, bounded
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                return None
            name = self.links[name]
        return None


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a pax or GNU long-name header whole, whatever size it declares (a few
    compressed bytes can declare gigabytes): refuse the size before anything is read."""

    _EXTENDED = {tarfile.XHDTYPE: "pax", tarfile.XGLTYPE: "pax global",
                 tarfile.SOLARIS_XHDTYPE: "pax", tarfile.GNUTYPE_LONGNAME: "GNU long-name",
                 tarfile.GNUTYPE_LONGLINK: "GNU long-link"}

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        kind = self._EXTENDED.get(self.type)
        if kind is not None and self.size > MAX_EXTENDED_HEADER:
            raise ArchiveError(f"a {kind} header of {self.size} bytes (at most "
                               f"{MAX_EXTENDED_HEADER}): not an image archive")
        return super()._proc_member(tarfile)  # type: ignore[misc]


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _chunks(f: IO[bytes], name: str, size: int,
            spent: Callable[[int], None] = lambda n: None) -> Iterator[bytes]:
    left = size
    while left > 0:
        try:
            data = f.read(min(CHUNK, left))
        except (tarfile.ReadError, EOFError, OSError, ValueError) as e:
            raise ArchiveError(f"{name}: the archive ends inside this file "
                               f"(truncated or corrupt: {e})") from None
        if not data:
            return
        left -= len(data)
        spent(size - left)
        yield data


def read_archive(fileobj: Reader, sink: Sink, budget: Budget = Budget()) -> Archive:
    """Walk the tar once; blobs go to ``sink`` as they come, JSON metadata is kept.

    The uncompressed tar is held to ``budget``: a member's declared size is checked
    before the sink sees it, the compression ratio as its bytes come."""
    archive = Archive()
    kept = 0
    last = "the start"
    wire = _Counted(fileobj)

    def check_ratio(name: str, start: int) -> Callable[[int], None]:
        def spent(n: int) -> None:
            at = start + n
            if at > budget.ratio_grace and at > budget.max_ratio * wire.total:
                raise ArchiveError(
                    f"{name}: the archive expands to over {budget.max_ratio} times its compressed "
                    f"size ({at} bytes from {wire.total}); refused")
        return spent

    try:
        # typeshed wants a fileobj with write/tell/seek/close too; stream mode "r|*" only reads.
        tar = tarfile.open(  # type: ignore[call-overload]
            fileobj=wire, mode="r|*", bufsize=256 * 1024, tarinfo=_BoundedTarInfo)
    except (tarfile.ReadError, tarfile.CompressionError, EOFError, OSError) as e:
        raise ArchiveError(f"not a tar archive (nor a gzip, bzip2 or xz compressed one): {e}") from None
    with tar:
        count = 0
        while True:
            try:
                info = tar.next()
            except (tarfile.ReadError, EOFError, OSError, ValueError) as e:
                raise ArchiveError(f"the archive is truncated or corrupt after {last}: {e}") from None
            if info is None:
                break
            tar.members.clear()  # a streamed archive never looks back: keep no index
            count += 1
            if count > MAX_MEMBERS:
                raise ArchiveError(f"more than {MAX_MEMBERS} files: not an image archive")
            name = _clean(info.name)
            last = name or info.name
            if info.issym() or info.islnk():
                target = info.linkname
                base = posixpath.dirname(name) if info.issym() else ""
                archive.links[name] = _clean(posixpath.join(base, target))
                continue
            if not info.isreg():
                continue
            if name.endswith("/json") or name.endswith("/VERSION"):
                continue  # docker's legacy per-layer metadata: nothing refers to it
            expected = None
            if name.startswith("blobs/"):
                parts = name.split("/")
                if len(parts) != 3 or parts[1] != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", parts[2]):
                    raise ArchiveError(f"{name}: not a sha256 blob path (blobs/sha256/<64 hex>)")
                expected = f"sha256:{parts[2]}"
            if info.offset_data + info.size > budget.max_bytes:
                raise ArchiveError(f"{name}: the archive unpacks to more than {budget.max_bytes} "
                                   f"bytes (this file alone declares {info.size}); refused")
            f = tar.extractfile(info)
            assert f is not None
            spent = check_ratio(name, info.offset_data)
            if info.size <= META_MAX:
                data = first = b"".join(_chunks(f, name, info.size, spent))
                chunks: Iterator[bytes] = iter([data])
                if data.lstrip()[:1] in (b"{", b"["):
                    kept += len(data)
                    if kept > META_TOTAL:
                        raise ArchiveError(f"over {META_TOTAL >> 20} MiB of JSON files "
                                           f"(at {name}): not an image archive")
                    if name in METADATA:
                        archive.json[name] = data
            else:
                data = b""
                rest = _chunks(f, name, info.size, spent)
                first = next(rest, b"")  # its magic says gzip or not, even if the sink skips it
                chunks = itertools.chain([first], rest)
            if name in METADATA:
                if name not in archive.json:
                    raise ArchiveError(f"{name}: not JSON, or over {META_MAX >> 20} MiB")
                continue
            member = Member(name, info.size, expected, chunks)
            sink.put(member)
            if member.digest is None:  # the sink had it already: trust the name's digest
                member.digest = expected
            if member.digest is None:
                raise ArchiveError(f"{name}: not stored and not named by digest")
            archive.files[name] = Descriptor("", member.digest, info.size)
            archive.heads[name] = first[:4]
            archive.digests[member.digest] = info.size
            if data and data.lstrip()[:1] in (b"{", b"["):
                archive.json[member.digest] = data
    return archive


# -- what to tell containerd ---------------------------------------------------------------------

@dataclass
class Unpack:
    """One manifest to unpack for the node's platform."""
    manifest: Descriptor
    config: Descriptor
    layers: list[Descriptor]
    diff_ids: list[str]


@dataclass
class Plan:
    images: dict[str, Descriptor] = field(default_factory=dict)  # name -> target
    unpack: dict[str, Unpack] = field(default_factory=dict)  # target digest -> what to unpack
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # digest -> GC labels
    new_blobs: dict[str, bytes] = field(default_factory=dict)  # synthesized manifests
    format: str = ""


def _load(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{what}: not valid JSON ({e})") from None


def platform_of(p: Any) -> str:
    if not isinstance(p, dict):
        return "unknown"
    s = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return s + (f"/{p['variant']}" if p.get("variant") else "")


def _descriptor(d: Any, where: str) -> Descriptor:
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str) \
            or not isinstance(d.get("size"), int):
        raise ArchiveError(f"{where}: a descriptor needs a digest and a size")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", d["digest"]):
        raise ArchiveError(f"{where}: unsupported digest {d['digest']!r} (sha256 only)")
    return Descriptor(str(d.get("mediaType") or ""), d["digest"], d["size"])


class _Planner:
    def __init__(self, archive: Archive, platform: str):
        self.a = archive
        self.platform = platform
        self.plan = Plan()

    def blob(self, d: Descriptor, where: str) -> bytes:
        if d.digest not in self.a.digests:
            raise ArchiveError(f"{where} names {d.digest}, which is not in the archive")
        data = self.a.json.get(d.digest)
        if data is None:
            raise ArchiveError(f"{where} names {d.digest} as JSON, but that blob is not JSON")
        if len(data) != d.size:
            raise ArchiveError(f"{where} says {d.digest} has {d.size} bytes; the archive's blob "
                               f"has {len(data)}")
        return data

    def check(self, d: Descriptor, where: str) -> None:
        if d.digest not in self.a.digests:
            raise ArchiveError(f"{where} names {d.digest}, which is not in the archive")
        size = self.a.digests[d.digest]
        if size != d.size:
            raise ArchiveError(f"{where} says {d.digest} has {d.size} bytes; the archive's blob "
                               f"has {size}")

    def resolve(self, d: Descriptor, where: str, depth: int = 0) -> Unpack:
        """The manifest for our platform under ``d`` (an index or a manifest), checked."""
        if depth > 4:
            raise ArchiveError(f"{where}: indexes nested too deep")
        doc = _load(self.blob(d, where), f"blob {d.digest}")
        if not isinstance(doc, dict):
            raise ArchiveError(f"blob {d.digest}: not a manifest or index")
        media = d.media_type or doc.get("mediaType") or ("" if "layers" in doc else OCI_INDEX)
        if media in INDEXES or "manifests" in doc:
            children = [_descriptor(m, f"index {d.digest} manifests[{i}]")
                        for i, m in enumerate(doc.get("manifests") or [])]
            self.plan.labels[d.digest] = {f"{GC_CONTENT}m.{i}": c.digest
                                         for i, c in enumerate(children) if c.digest in self.a.digests}
            raw = doc.get("manifests") or []
            seen = [platform_of(m.get("platform")) for m in raw]
            for i, (c, p) in enumerate(zip(children, seen, strict=True)):
                if p == self.platform or p.startswith(self.platform + "/"):
                    return self.resolve(c, f"index {d.digest} manifests[{i}]", depth + 1)
            shown = ", ".join(p for p in seen if p != "unknown/unknown") or "none"
            raise ArchiveError(f"{where}: no {self.platform} image in index {d.digest} "
                               f"(platforms: {shown})")
        if media not in MANIFESTS and "layers" not in doc:
            raise ArchiveError(f"{where}: {d.digest} has media type {media!r}, not an image "
                               "manifest or index")
        return self.manifest(Descriptor(media, d.digest, d.size), doc, where)

    def manifest(self, d: Descriptor, doc: dict[str, Any], where: str) -> Unpack:
        what = f"manifest {d.digest}"
        config = _descriptor(doc.get("config"), f"{what} config")
        layers = [_descriptor(x, f"{what} layers[{i}]") for i, x in enumerate(doc.get("layers") or [])]
        if not layers:
            raise ArchiveError(f"{what} has no layers")
        for i, layer in enumerate(layers):
            if not LAYER_TYPES.match(layer.media_type):
                raise ArchiveError(f"{what} layers[{i}] has media type {layer.media_type!r}, "
                                   "which containerd cannot unpack")
            self.check(layer, f"{what} layers[{i}]")
        cfg = _load(self.blob(config, f"{what} config"), f"config {config.digest}")
        if not isinstance(cfg, dict):
            raise ArchiveError(f"config {config.digest}: not a JSON object")
        platform = platform_of(cfg)
        if not (platform == self.platform or platform.startswith(self.platform + "/")):
            raise ArchiveError(f"{where}: image is for {platform}; this node runs {self.platform}")
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids")
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layers) \
                or not all(isinstance(x, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", x)
                           for x in diff_ids):
            raise ArchiveError(f"config {config.digest}: rootfs.diff_ids must list one sha256 "
                               f"digest per layer ({len(layers)} layers)")
        self.plan.labels[d.digest] = {f"{GC_CONTENT}config": config.digest,
                                      **{f"{GC_CONTENT}l.{i}": x.digest for i, x in enumerate(layers)}}
        return Unpack(d, config, layers, diff_ids)

    def name(self, ref: str, target: Descriptor, where: str) -> None:
        try:
            name = normalize(ref)
        except ArchiveError as e:
            raise ArchiveError(f"{where}: {e}") from None
        self.plan.images[name] = target

    def oci(self) -> None:
        index = _load(self.a.json["index.json"], "index.json")
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ArchiveError("index.json lists no manifests")
        for i, entry in enumerate(entries):
            where = f"index.json manifests[{i}]"
            d = _descriptor(entry, where)
            notes = entry.get("annotations") or {}
            ref = notes.get(NAME_ANNOTATION) or notes.get(REF_ANNOTATION)
            if not ref:
                continue
            self.plan.unpack[d.digest] = self.resolve(d, where)
            self.name(ref, d, where)

    def docker(self) -> None:
        entries = _load(self.a.json["manifest.json"], "manifest.json")
        if not isinstance(entries, list) or not entries:
            raise ArchiveError("manifest.json lists no images")
        for i, entry in enumerate(entries):
            where = f"manifest.json[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                    or not isinstance(entry.get("Layers"), list):
                raise ArchiveError(f"{where}: needs Config and Layers")
            config = self.a.path(_clean(entry["Config"]))
            if config is None:
                raise ArchiveError(f"{where}: config {entry['Config']} is not in the archive")
            layers = []
            for path in entry["Layers"]:
                found = self.a.path(_clean(str(path)))
                if found is None:
                    raise ArchiveError(f"{where}: layer {path} is not in the archive")
                head = self._head(_clean(str(path)))
                if head.startswith(b"\x28\xb5\x2f\xfd"):
                    raise ArchiveError(f"{where}: layer {path} is zstd-compressed; docker "
                                       "archives carry tar or gzip layers")
                gz = head.startswith(b"\x1f\x8b")
                layers.append(Descriptor(DOCKER_LAYER_GZIP if gz else DOCKER_LAYER,
                                         found.digest, found.size))
            body = json.dumps({
                "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": Descriptor(DOCKER_CONFIG, config.digest, config.size).json(),
                "layers": [x.json() for x in layers]}, separators=(",", ":")).encode()
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self.plan.new_blobs[digest] = body
            self.a.json[digest] = body
            self.a.digests[digest] = len(body)
            d = Descriptor(DOCKER_MANIFEST, digest, len(body))
            self.plan.unpack[digest] = self.resolve(d, where)
            for tag in entry.get("RepoTags") or []:
                self.name(str(tag), d, where)

    def _head(self, path: str) -> bytes:
        for _ in range(16):
            if path in self.a.heads:
                return self.a.heads[path]
            path = self.a.links.get(path, "")
        return b""


def plan(archive: Archive, platform: str = "linux/amd64") -> Plan:
    """What to create in containerd for this archive; ArchiveError names what is wrong."""
    p = _Planner(archive, platform)
    has_index = "index.json" in archive.json
    has_docker = "manifest.json" in archive.json
    if not has_index and not has_docker:
        raise ArchiveError("no index.json (OCI image layout) nor manifest.json (docker save) "
                           "in the archive")
    if has_index:
        p.plan.format = "oci"
        p.oci()
    if not p.plan.images and has_docker:
        p.plan.format = "docker"
        p.docker()
    if not p.plan.images:
        raise ArchiveError("the archive names no image: give its index.json entries an "
                           f"{REF_ANNOTATION} or {NAME_ANNOTATION} annotation (OCI), or RepoTags "
                           "(docker save IMAGE:TAG)")
    return p.plan
