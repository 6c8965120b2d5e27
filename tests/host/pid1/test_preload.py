"""The kernel module loader PID 1 forks before its imports (talos_init.preload): stages in
order in one child, each reported on the pipe as it ends, its log events written by PID 1 when
it takes the stage; a failure, a hang or an early end costs the waiter its wait, no more. The
stages here are plain functions (this host's kernel is not the image's); fork and pipe are
real."""

from __future__ import annotations

import os
import time

from talos_init import log, preload

child_log = log.get_logger("stage")


def _loaded(what):
    def work():
        child_log.info("loaded", what=what, pid=os.getpid())
        return {what: "loaded"}
    return work


def test_stages_arrive_in_order_with_results_and_their_events():
    loader = preload.start([("a", _loaded("one")), ("b", _loaded("two"))])
    with log.capture() as events:
        first = loader.wait("a", 30)
        assert first is not None and first["result"] == {"one": "loaded"} and first["error"] is None
        assert loader.wait("b", 30)["result"] == {"two": "loaded"}
    replayed = [e for e in events if e["event"] == "loaded"]
    assert [e["what"] for e in replayed] == ["one", "two"]  # each once, in order
    assert len({e["pid"] for e in replayed}) == 1  # one child ran both
    assert replayed[0]["pid"] != os.getpid() and replayed[0]["logger"] == "stage"
    summaries = [e for e in events if e["event"] == "modules_preloaded"]
    assert [e["stage"] for e in summaries] == ["a", "b"]
    assert loader.wait("never", 30) is None and loader.ended and loader.pid == 0  # reaped


def test_a_failing_stage_is_reported_and_the_next_still_runs():
    def boom():
        raise OSError(2, "No such file or directory", "/lib/modules/x/loop.ko")

    loader = preload.start([("payload", boom), ("var", _loaded("ext4"))])
    with log.capture() as events:
        report = loader.wait("payload", 30)
        assert report["error"].startswith("FileNotFoundError: ") and "loop.ko" in report["error"]
        assert loader.wait("var", 30)["error"] is None
    summary = next(e for e in events if e["event"] == "modules_preloaded")
    assert summary["stage"] == "payload" and summary["error"].startswith("FileNotFoundError")


def test_a_hanging_stage_costs_the_timeout_and_is_left_running():
    loader = preload.start([("slow", lambda: time.sleep(60))])
    started = time.monotonic()
    assert loader.wait("slow", 0.3) is None and not loader.ended
    assert time.monotonic() - started >= 0.3
    assert os.waitpid(loader.pid, os.WNOHANG) == (0, 0)
    os.kill(loader.pid, 9)
    assert loader.wait("slow", 30) is None and loader.ended  # the pipe closed with the child


def test_a_child_that_dies_ends_the_wait_at_once():
    loader = preload.start([("dies", lambda: os._exit(7))])
    started = time.monotonic()
    assert loader.wait("dies", 60) is None and loader.ended
    assert time.monotonic() - started < 30  # the closed pipe ended it, not the timeout


def test_garbage_on_the_pipe_ends_the_wait_without_raising():
    """A report PID 1 cannot read is logged and ends the loader for it; nothing raises."""
    rfd, wfd = os.pipe()
    os.write(wfd, (12).to_bytes(4, "little") + b"not marshal!")
    os.close(wfd)
    loader = preload.Loader(0, rfd)
    with log.capture() as events:
        assert loader.wait("payload", 5) is None
    assert loader.ended
    assert [e["event"] for e in events] == ["preload_unreadable"]


def test_the_child_has_none_of_pid1s_signal_handlers(tmp_path):
    """Started after PID 1's signals phase (the var phase's own loader), the child dies of a
    SIGTERM instead of running PID 1's handler."""
    import signal

    ran = tmp_path / "handler-ran"
    previous = signal.signal(signal.SIGTERM, lambda *_: ran.write_text(str(os.getpid())))
    try:
        loader = preload.start([("reset", lambda: None), ("slow", lambda: time.sleep(60))])
        assert loader.wait("reset", 30) is not None  # the reset comes before any stage
        os.kill(loader.pid, signal.SIGTERM)
        _, status = os.waitpid(loader.pid, 0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert not ran.exists()
