"""osctl image import/list through a real apid into a real containerd: roles, formats, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.host.apid.conftest import ROOT, start_apid
from tests.ociimage import HELLO_C, build_image, compile_static, members, tar_bytes


@pytest.fixture(scope="module")
def hello(tmp_path_factory):
    return compile_static(HELLO_C, tmp_path_factory.mktemp("bin") / "hello")


def test_admin_imports_both_formats_and_a_reader_lists_them(node, containerd, hello, tmp_path):
    """OCI from a file, docker save from stdin; `image list` shows both with size and platform."""
    admin = node.osctlconfig("admin", ["os:admin"])
    oci = build_image(tmp_path / "oci.tar", "example.local/talos/hello:1", binary=hello)
    r = node.osctl(admin, "image", "import", str(oci))
    assert r.returncode == 0, r.stderr
    assert "example.local/talos/hello:1" in r.stdout and "imported" in r.stdout, r.stdout
    docker = build_image(tmp_path / "docker.tar", "busybox:mine", binary=hello, fmt="docker")
    with open(docker, "rb") as stdin:
        r = subprocess.run([sys.executable, "-m", "talos_init.osctl", "--osctlconfig", str(admin),
                            "-o", "json", "image", "import", "-"], stdin=stdin,
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert [i["name"] for i in result["images"]] == ["docker.io/library/busybox:mine"]
    assert result["bytes"] == docker.stat().st_size

    reader = node.osctlconfig("reader", ["os:reader"])
    r = node.osctl(reader, "-o", "json", "image", "list")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {"docker.io/library/busybox:mine", "example.local/talos/hello:1"}
    assert all(row["platforms"] == ["linux/amd64"] and row["size"] > 100_000 for row in rows.values())
    r = node.osctl(reader, "image", "list")
    header, *lines = r.stdout.splitlines()
    assert header.split() == ["NAME", "DIGEST", "SIZE", "PLATFORMS", "CREATED"]
    assert lines[1].split()[0] == "example.local/talos/hello:1", r.stdout

    r = node.osctl(reader, "image", "import", str(oci))
    assert r.returncode == 1 and "image.import needs role os:admin" in r.stderr, r.stderr
    r = node.osctl(admin, "image", "import", str(tmp_path / "absent.tar"))
    assert r.returncode == 1 and "absent.tar: No such file or directory" in r.stderr, r.stderr


@pytest.mark.parametrize("case,expect", [
    ("garbage", "not a tar archive"),
    ("truncated", "the archive ends"),
    ("corrupt", "content digest is sha256:"),
    ("nomanifest", "no index.json (OCI image layout) nor manifest.json"),
    ("arm64", "image is for linux/arm64; this node runs linux/amd64"),
])
def test_bad_archives_are_refused_in_words_and_apid_stays_up(node, containerd, hello, tmp_path,
                                                             case, expect):
    binary = hello.read_bytes()
    files = members("example.local/bad:1", binary, compress=False, arch="arm64" if case == "arm64"
                    else "amd64")
    layer = next(k for k in files if k.startswith("blobs/") and binary[:64] in files[k])
    if case == "corrupt":
        files[layer] = files[layer].replace(binary[:64], binary[:63] + b"!")
    if case == "nomanifest":
        del files["index.json"]
    data = tar_bytes(files)
    if case == "garbage":
        data = b"definitely not a tar archive\n" * 50000
    if case == "truncated":
        data = data[:data.index(binary[:64]) + 4096]
    path = tmp_path / "bad.tar"
    path.write_bytes(data)
    admin = node.osctlconfig("admin", ["os:admin"])
    r = node.osctl(admin, "image", "import", str(path))
    assert r.returncode == 1 and "bad request" in r.stderr and expect in r.stderr, r.stderr
    if case == "corrupt":
        assert layer in r.stderr
    r = node.osctl(admin, "-o", "json", "image", "list")
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stdout + r.stderr
    assert node.process.poll() is None


def test_upload_over_the_size_limit_is_refused_early(node, containerd, hello, tmp_path):
    """An apid started with --max-upload stops reading at the limit and says so."""
    second = tmp_path / "second"
    second.mkdir()
    proc, host, port = start_apid(second, node.tmp / "config.json", node.tmp / "run" / "init.sock",
                                  "--containerd-socket", str(node.containerd_dir / "containerd.sock"),
                                  "--max-upload", "200000")
    try:
        big = tmp_path / "big.tar"
        big.write_bytes(tar_bytes(members("example.local/big:1", hello.read_bytes(),
                                          extra={"pad": b"\0" * (8 << 20)}, compress=False)))
        config = node.osctlconfig("admin", ["os:admin"])
        r = subprocess.run([sys.executable, "-m", "talos_init.osctl", "--osctlconfig", str(config),
                            "-e", f"{host}:{port}", "image", "import", str(big)],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 1, r.stdout
        assert "request too large" in r.stderr and "limit of 200000 bytes" in r.stderr, r.stderr
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_client_that_vanishes_mid_upload_leaves_nothing_behind(node, containerd, hello):
    """The upload stops halfway (client gone): apid aborts the import, deletes its lease, and
    goes on serving; no image and no ingest is left."""
    from talos_init.containerd.grpc import decode
    from talos_init.osctl.client import Client, load_context

    archive = tar_bytes(members("example.local/gone:1", hello.read_bytes(), compress=False,
                                extra={"pad": bytes(range(256)) * (16 << 12)}))

    def chunks():
        for i in range(0, len(archive) // 2, 1 << 16):
            yield archive[i:i + (1 << 16)]
        raise KeyboardInterrupt  # the user pressed Ctrl-C

    client = Client(load_context(node.osctlconfig("admin", ["os:admin"]), None))
    try:
        with pytest.raises(KeyboardInterrupt):
            client.upload(node.target, "image.import", {}, chunks())
    finally:
        client.close()
    deadline = time.monotonic() + 30
    while True:
        leases = decode(containerd.call("/containerd.services.leases.v1.Leases/List", b"", "k8s.io"))
        ingests = decode(containerd.call("/containerd.services.content.v1.Content/ListStatuses", b"",
                                         "k8s.io"))
        if not leases.get(1) and not ingests.get(1) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not leases.get(1) and not ingests.get(1), (leases, ingests)
    r = node.osctl(node.osctlconfig("reader", ["os:reader"]), "-o", "json", "image", "list")
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stdout + r.stderr
    assert "api_upload_failed" in (node.tmp / "apid.log").read_text()
