"""CRI's container log format: records parsed, partial lines joined, reads bounded from the end."""

from __future__ import annotations

from talos_init.apid import crilog


def test_records_are_parsed_and_partials_joined_per_stream():
    """P records wait for the F of the same stream; the other stream goes on in between."""
    j = crilog.Joiner()
    lines = [b"2026-01-01T00:00:00.1Z stdout P hel", b"2026-01-01T00:00:00.2Z stderr F oops",
             b"2026-01-01T00:00:00.3Z stdout F lo world", b"2026-01-01T00:00:00.4Z stdout F ",
             b"not a cri record"]
    out = [m for line in lines for m in j.feed(line)]
    assert [(m["stream"], m["line"]) for m in out] == [
        ("stderr", "oops"), ("stdout", "hello world"), ("stdout", ""), (None, "not a cri record")]
    assert out[1]["t"] == "2026-01-01T00:00:00.3Z"
    assert crilog.parse(b"2026-01-01T00:00:00Z stdin F x") is None


def test_tail_reads_at_most_the_limit_from_the_end(tmp_path, monkeypatch):
    """With a small limit only the end is read, the cut first line dropped, the unfinished last
    record left for following."""
    monkeypatch.setattr(crilog, "READ_LIMIT", 200)
    log = tmp_path / "0.log"
    body = b"".join(b"2026-01-01T00:00:00Z stdout F line %d\n" % i for i in range(100))
    log.write_bytes(body + b"2026-01-01T00:00:00Z stdout F unfinish")
    items, offset, _ = crilog.read_tail(str(log), None)
    assert [m["line"] for m in items][-1] == "line 99" and len(items) < 10
    assert all(m["stream"] == "stdout" for m in items)
    assert offset == len(body)
    items, _, _ = crilog.read_tail(str(log), 2)
    assert [m["line"] for m in items] == ["line 98", "line 99"]
    assert crilog.read_tail(str(log), 0)[0] == []
