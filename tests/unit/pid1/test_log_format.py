"""Log lines: one event per line with time, level and phase; kmsg records with priorities."""

import io
import json
import os

import pytest

from talos_init import log


@pytest.fixture
def kmsg():
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    os.close(r)
    os.close(w)
    log.configure()  # back to the default: stderr


def _records(fd):
    data = os.read(fd, 1 << 20)
    return [rec for rec in data.split(b"<")[1:]]


def test_console_line_has_time_level_phase_and_fields(kmsg):
    """One line: monotonic time, level, phase, logger name, event and key=value pairs."""
    out = io.StringIO()
    log.configure(console=out, kmsg=kmsg[1], phase_getter=lambda: "mounts", clock=lambda: 1.5)
    log.get_logger("mounts").info("mount", target="/proc", note="two words")
    expected = '[    1.500000] info    mounts mounts: mount target=/proc note="two words"\n'
    assert out.getvalue() == expected


def test_kmsg_gets_one_prefixed_record_per_line_with_priority(kmsg):
    """Each line is a separate kmsg write with a syslog priority and the talos-init prefix."""
    log.configure(console=io.StringIO(), kmsg=kmsg[1])
    logger = log.get_logger("x")
    logger.warning("careful")
    try:
        raise ValueError("bad thing")
    except ValueError:
        logger.exception("failed")
    records = _records(kmsg[0])
    assert records[0].startswith(b"4>talos-init: ") and b"careful" in records[0]
    assert all(r.startswith(b"3>talos-init: ") for r in records[1:])
    assert any(b"ValueError: bad thing" in r for r in records)
    assert len(records) > 3  # the traceback is split, one record per line


def test_kmsg_records_are_bounded(kmsg):
    """A huge event is cut to the kmsg bound instead of being rejected by the kernel."""
    log.configure(console=io.StringIO(), kmsg=kmsg[1])
    log.get_logger("x").info("big", blob="y" * 5000)
    records = _records(kmsg[0])
    assert len(records) == 1 and len(records[0]) + 1 == log.KMSG_MAX_LINE


def test_json_lines_mode(kmsg):
    """JSON mode writes one object per line with t, level, phase, logger and the fields."""
    out = io.StringIO()
    log.configure(console=out, json=True, phase_getter=lambda: "cmdline", clock=lambda: 2.0)
    log.get_logger("init").info("cmdline", hostname="n1", ok=True)
    event = json.loads(out.getvalue())
    assert event == {"t": 2.0, "event": "cmdline", "level": "info", "phase": "cmdline",
                     "logger": "init", "hostname": "n1", "ok": True}


def test_debug_is_filtered_and_level_is_configurable(kmsg):
    """Below the configured level nothing is written."""
    out = io.StringIO()
    log.configure(console=out, level="warning")
    log.get_logger("x").info("quiet")
    log.get_logger("x").error("loud")
    assert "quiet" not in out.getvalue() and "loud" in out.getvalue()


def test_unopenable_kmsg_is_reported_not_raised(tmp_path, kmsg):
    """A kmsg path that cannot be opened is a warning on the console; logging goes on."""
    out = io.StringIO()
    log.configure(console=out, kmsg=str(tmp_path / "missing" / "kmsg"))
    assert "kmsg_unavailable" in out.getvalue()


def test_broken_console_does_not_raise_and_kmsg_still_gets_the_event(kmsg):
    """A closed console drops the line without raising; kmsg still receives the event."""
    out = io.StringIO()
    log.configure(console=out, kmsg=kmsg[1])
    out.close()
    log.get_logger("x").info("into_the_void")
    assert b"into_the_void" in _records(kmsg[0])[0]


def test_failing_phase_getter_costs_only_the_field(kmsg):
    """A phase getter that raises leaves phase '?' and the event is still written."""
    out = io.StringIO()
    log.configure(console=out, phase_getter=lambda: 1 / 0)
    log.get_logger("x").info("still_here")
    assert " ? x: still_here" in out.getvalue()


def test_unknown_level_is_named(kmsg):
    """A bad level is rejected with its name."""
    with pytest.raises(ValueError, match="'verbose'"):
        log.configure(level="verbose")


def test_configure_takes_keywords_only(kmsg):
    """A positional argument (a daemon passing its name) is a TypeError, not a console path."""
    with pytest.raises(TypeError):
        log.configure("userdata")  # type: ignore[misc]


def test_exception_instance_and_unrenderable_value(kmsg):
    """exc_info may be an exception; a value whose repr raises costs the fields, not the event."""
    class Bad:
        def __repr__(self):
            raise RuntimeError("no repr")

    out = io.StringIO()
    log.configure(console=out)
    logger = log.get_logger("x")
    logger.error("caught", exc_info=ValueError("kept for later"))
    logger.info("odd", value=Bad())
    text = out.getvalue()
    assert "x: caught" in text and "ValueError: kept for later" in text
    assert "x: odd render_error=" in text and "no repr" in text


def test_capture_collects_events_of_every_level_and_writes_nothing(kmsg):
    """log.capture() gives event dicts (tests), debug included, and leaves the console alone."""
    out = io.StringIO()
    log.configure(console=out, level="warning")
    with log.capture() as events:
        log.get_logger("svc").debug("detail", n=1)
        log.get_logger("svc").warning("cgroup_memory_max_unavailable", path="/x")
    assert [(e["event"], e["level"], e["logger"]) for e in events] == [
        ("detail", "debug", "svc"), ("cgroup_memory_max_unavailable", "warning", "svc")]
    assert events[1]["path"] == "/x" and out.getvalue() == ""
    log.get_logger("svc").warning("after")
    assert "after" in out.getvalue()


def test_exception_outside_an_except_block_adds_no_traceback(kmsg):
    """log.exception() with nothing being handled writes the event alone."""
    out = io.StringIO()
    log.configure(console=out, json=True)
    log.get_logger("x").exception("nothing_raised")
    assert "exception" not in json.loads(out.getvalue())
