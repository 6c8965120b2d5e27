"""`python -m initramfs.build` (make image) stamps its output so ensure_built (make run) reuses it."""


import pytest

from initramfs import build


@pytest.fixture
def fake_builder(monkeypatch):
    """The builder's own work replaced by writing a placeholder image: the bookkeeping is under test."""
    calls = []

    def fake_build(self):
        calls.append(self.out)
        (self.out / "initramfs.img").write_bytes(b"image")
        return self.out / "initramfs.img"

    monkeypatch.setattr(build.Builder, "build", fake_build)
    monkeypatch.setattr(build.Builder, "size_report", lambda self: "")
    return calls


@pytest.fixture
def no_rebuild(monkeypatch):
    """ensure_built's build (a subprocess) is recorded instead of run."""
    runs = []

    class Done:
        returncode, stdout, stderr = 0, "", ""

    monkeypatch.setattr(build.subprocess, "run", lambda argv, **kw: runs.append(argv) or Done())
    return runs


def test_an_image_built_by_the_builder_is_reused_by_ensure_built(tmp_path, fake_builder, no_rebuild):
    """make run = make image, then ensure_built: the second finds the first's image and builds nothing."""
    assert build.main(["--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / build.STAMP).read_text() == build.input_digest()
    assert build.ensure_built(tmp_path) == tmp_path / "initramfs.img"
    assert fake_builder == [tmp_path] and no_rebuild == []


def test_a_build_with_extra_files_is_not_taken_for_the_plain_image(tmp_path, fake_builder, no_rebuild):
    """--extra-rootfs makes another image: no stamp, so ensure_built builds the plain one."""
    extra = tmp_path / "extra"
    extra.mkdir()
    out = tmp_path / "out"
    build._write_stamp(out.mkdir() or out, build.input_digest())  # left by an earlier plain build
    assert build.main(["--out", str(out), "--quiet", "--extra-rootfs", str(extra)]) == 0
    assert not (out / build.STAMP).exists()
    build.ensure_built(out)
    assert len(no_rebuild) == 1


def test_a_failed_build_leaves_no_stamp(tmp_path, monkeypatch, no_rebuild):
    """A build that fails after an earlier good one removes the stamp: its image may be half written."""
    build._write_stamp(tmp_path, build.input_digest())
    (tmp_path / "initramfs.img").write_bytes(b"old")

    def failing(self):
        raise RuntimeError("no kernel")

    monkeypatch.setattr(build.Builder, "build", failing)
    assert build.main(["--out", str(tmp_path), "--quiet"]) == 1
    assert not (tmp_path / build.STAMP).exists()
