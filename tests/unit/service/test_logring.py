"""The per-service log ring: bounded, lines cut not lost, followers and file sink."""

from talos_init.service.logring import LogRing


def test_lines_split_across_chunks_and_ring_is_bounded():
    """Chunks are joined into lines and the oldest lines go first when full."""
    ring = LogRing(ring_bytes=40, max_line=100)
    ring.feed(b"one\ntw")
    ring.feed(b"o\nthree\n")
    assert ring.tail() == ["one", "two", "three"]
    for i in range(10):
        ring.feed(f"line {i}\n".encode())
    assert ring.tail(2) == ["line 8", "line 9"]
    assert sum(len(x) + 1 for x in ring.tail()) <= 40


def test_overlong_line_is_cut_with_a_marker():
    """A line over max_line keeps its start and says how much was dropped."""
    ring = LogRing(ring_bytes=1000, max_line=10)
    ring.feed(b"0123456789abcdef")
    ring.feed(b"ghij\nnext\n")
    assert ring.tail() == ["0123456789 [line cut: 10 more bytes dropped]", "next"]
    ring.feed(b"tail without newline")
    ring.flush()
    assert ring.tail(1) == ["tail witho [line cut: 10 more bytes dropped]"]


def test_followers_and_file_sink(tmp_path):
    """Followers see new lines; the file gets what the ring held plus what follows."""
    ring = LogRing()
    ring.feed(b"before\n")
    seen = []
    stop = ring.follow(seen.append)
    ring.open_file(tmp_path / "svc.log")
    ring.feed("after \xe9\n".encode())
    stop()
    ring.feed(b"unseen\n")
    ring.close_file()
    assert seen == ["after \xe9"]
    lines = (tmp_path / "svc.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["before", "after \xe9", "unseen"]
