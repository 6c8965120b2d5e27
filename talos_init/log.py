"""Logging for PID 1 and its helper daemons: events with key=value fields.

``get_logger(name).info("event", key=value)`` writes one line per event:
monotonic time, level, boot phase, logger name, event, then ``key=value``
pairs (or one JSON object per line). Sinks: the console and /dev/kmsg, where
each line is one record with a syslog priority and a ``talos-init: `` prefix
so ``dmesg`` shows it. Logging never raises: a sink that fails is skipped.

Ours rather than structlog: structlog cost every Python process of the node
about 5 MiB Rss and 0.4-1.1 s of import under TCG (docs/for-devs/performance.md)
for a pipeline we used without its features. Nothing but os, sys and time is
imported up front (the kernel module loader, talos_init.preload, runs before
PID 1 imports json, re or typing); json when a value needs quoting or a line is
JSON, traceback when an exception is logged.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing's own constant, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any, TypeAlias

    PhaseGetter: TypeAlias = Callable[[], str]
    EventDict: TypeAlias = dict[str, Any]

KMSG_PREFIX = "talos-init: "
# printk keeps records up to 1024 bytes including its own header; stay well below.
KMSG_MAX_LINE = 900
KMSG_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class Sinks:
    """Where rendered lines go; one instance shared by every logger."""

    def __init__(self, console: IO[str] | int | None, kmsg_fd: int | None,
                 owned: tuple[int, ...] = ()):
        self.console = console
        self.kmsg_fd = kmsg_fd
        self.owned = owned  # fds opened by configure(), closed when it is called again

    def close(self) -> None:
        for fd in self.owned:
            try:
                os.close(fd)
            except OSError:
                pass
        self.owned = ()

    def write(self, level: str, line: str) -> None:
        if self.console is not None:
            try:
                if isinstance(self.console, int):
                    os.write(self.console, (line + "\n").encode(errors="replace"))
                else:
                    self.console.write(line + "\n")
                    self.console.flush()
            except (OSError, ValueError):
                pass  # policy: a broken console must not break PID 1
        if self.kmsg_fd is not None:
            self._kmsg(level, line)

    def _kmsg(self, level: str, text: str) -> None:
        assert self.kmsg_fd is not None
        prio = KMSG_PRIORITY.get(level, 6)
        for line in text.splitlines():
            data = f"<{prio}>{KMSG_PREFIX}{line}".encode(errors="replace")[:KMSG_MAX_LINE]
            try:
                os.write(self.kmsg_fd, data)  # one write is one kmsg record
            except OSError:
                pass  # policy: EAGAIN/EINVAL from kmsg only lose that record


def _format_value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        import json

        return json.dumps(text)
    return text


def render_kv(event_dict: EventDict) -> str:
    """``[t] level phase logger: event k=v ...`` then the traceback, if any."""
    ev = dict(event_dict)
    t, level, phase = ev.pop("t"), ev.pop("level"), ev.pop("phase", "")
    name, event = ev.pop("logger", ""), ev.pop("event", "")
    exc = ev.pop("exception", None)
    head = f"[{t:12.6f}] {level:<7} {phase or '-'} {name}: {event}"
    pairs = " ".join(f"{k}={_format_value(v)}" for k, v in ev.items())
    line = f"{head} {pairs}" if pairs else head
    return f"{line}\n{exc.rstrip()}" if exc else line


def render_json(event_dict: EventDict) -> str:
    ev = {"t": round(event_dict["t"], 6), "event": event_dict.get("event", "")}
    ev.update((k, v) for k, v in event_dict.items() if k not in ev)
    import json

    return json.dumps(ev, default=str, separators=(",", ":"))


def _format_exc(exc_info: Any) -> str:
    import traceback  # only when an exception is logged: tokenize, linecache...

    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif not isinstance(exc_info, tuple):
        exc_info = sys.exc_info()
    if exc_info[0] is None:
        return ""
    return "".join(traceback.format_exception(*exc_info))


class _Config:
    def __init__(self, sinks: Sinks, render: Callable[[EventDict], str], threshold: int,
                 phase_getter: PhaseGetter | None, clock: Callable[[], float]):
        self.sinks = sinks
        self.render = render
        self.threshold = threshold
        self.phase_getter = phase_getter
        self.clock = clock

    def phase(self) -> str:
        try:
            return self.phase_getter() if self.phase_getter else ""
        except Exception:  # policy: a broken getter costs the field, not the event
            return "?"


_config = _Config(Sinks(sys.stderr, None), render_kv, LEVELS["info"], None, time.monotonic)
_captured: list[EventDict] | None = None


def _emit(name: str, level: str, event: str, fields: dict[str, Any],
          at: float | None = None) -> None:
    cfg = _config
    if LEVELS[level] < cfg.threshold and _captured is None:
        return
    exc_info = fields.pop("exc_info", None)
    ev: EventDict = {"t": cfg.clock() if at is None else at, "level": level,
                     "phase": cfg.phase(), "logger": name, "event": event}
    ev.update(fields)
    if exc_info and (text := _format_exc(exc_info)):  # exception() outside an except: nothing
        ev["exception"] = text
    if _captured is not None:
        _captured.append(ev)
        return
    try:
        line = cfg.render(ev)
    except Exception as exc:  # policy: a value that cannot be rendered costs the fields
        line = render_kv({"t": ev["t"], "level": level, "phase": ev["phase"], "logger": name,
                          "event": event, "render_error": repr(exc)})
    cfg.sinks.write(level, line)


class Logger:
    """``log.info("event", key=value)``; ``exception()`` adds the current traceback."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def debug(self, event: str, **fields: Any) -> None:
        _emit(self.name, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        _emit(self.name, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        _emit(self.name, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        _emit(self.name, "error", event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        _emit(self.name, "critical", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        fields.setdefault("exc_info", True)
        _emit(self.name, "error", event, fields)


def get_logger(name: str) -> Logger:
    """A logger for a module; it follows later ``configure()`` calls."""
    return Logger(name)


def replay(event: EventDict) -> None:
    """Write an event captured in another process (a forked helper) as if logged here, at the
    time it happened there."""
    fields = {k: v for k, v in event.items() if k not in ("t", "level", "phase", "logger", "event")}
    level = event.get("level", "info")
    at = event.get("t")
    _emit(str(event.get("logger", "?")), level if level in LEVELS else "info",
          str(event.get("event", "?")), fields, at=at if isinstance(at, float) else None)


class capture:
    """``with log.capture() as events:``: every event as a dict, all levels, nothing written."""

    def __enter__(self) -> list[EventDict]:
        global _captured
        self.saved, _captured = _captured, []
        return _captured

    def __exit__(self, *exc: object) -> None:
        global _captured
        _captured = self.saved


def configure(*, console: IO[str] | int | str | None = None, kmsg: str | int | None = None,
              json: bool = False, phase_getter: PhaseGetter | None = None,
              level: str = "info", clock: Callable[[], float] = time.monotonic) -> Sinks:
    """Configure logging for this process; safe to call again (reconfigures).

    Helper daemons call ``configure()``: one line per event on stderr, which
    their supervisor captures (also the default of a process that never calls it).

    ``console``: a text stream, an fd, or a device path such as /dev/console
    (default: stderr). ``kmsg``: a path such as /dev/kmsg, an fd, or None.
    A path that cannot be opened is reported on the console and skipped.
    """
    global _config
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    problems, owned = [], []
    if isinstance(console, str):
        try:
            console = os.open(console, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
            owned.append(console)
        except OSError as e:
            problems.append(("console_unavailable", str(e)))
            console = sys.stderr
    elif console is None:
        console = sys.stderr
    kmsg_fd = None
    if isinstance(kmsg, str):
        try:
            kmsg_fd = os.open(kmsg, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK)
            owned.append(kmsg_fd)
        except OSError as e:
            problems.append(("kmsg_unavailable", str(e)))
    elif isinstance(kmsg, int):
        kmsg_fd = kmsg
    sinks = Sinks(console, kmsg_fd, tuple(owned))
    previous = _config.sinks
    _config = _Config(sinks, render_json if json else render_kv, LEVELS[level], phase_getter,
                      clock)
    previous.close()
    log = get_logger("log")
    for event, error in problems:
        log.warning(event, error=error)
    return sinks
