"""structlog configuration for PID 1 and its helper daemons.

One event per line: monotonic time, level, boot phase, logger name, event,
then ``key=value`` pairs (or one JSON object per line). Sinks: the console and
/dev/kmsg, where each line is one record with a syslog priority and a
``talos-init: `` prefix so ``dmesg`` shows it. Logging never raises: a sink
that fails is skipped. Only stdlib modules structlog already loads are used.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import structlog
from structlog.processors import format_exc_info

KMSG_PREFIX = "talos-init: "
# printk keeps records up to 1024 bytes including its own header; stay well below.
KMSG_MAX_LINE = 900
KMSG_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_METHOD_LEVEL = {"msg": "info", "warn": "warning", "exception": "error", "fatal": "critical"}

PhaseGetter = Callable[[], str]
_current: Sinks | None = None


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


class _SinkLogger:
    """The structlog "wrapped logger": the method name is the level."""

    def __init__(self, sinks: Sinks, name: str):
        self.sinks = sinks
        self.name = name

    def _emit(self, level: str) -> Callable[[str], None]:
        return lambda line: self.sinks.write(level, line)

    def __getattr__(self, method: str) -> Callable[[str], None]:
        level = _METHOD_LEVEL.get(method, method)
        if level not in LEVELS:
            raise AttributeError(method)
        return self._emit(level)


def _format_value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def render_kv(event_dict: dict[str, Any]) -> str:
    """``[t] level phase logger: event k=v ...`` then the traceback, if any."""
    ev = dict(event_dict)
    t, level, phase = ev.pop("t"), ev.pop("level"), ev.pop("phase", "")
    name, event = ev.pop("logger", ""), ev.pop("event", "")
    exc = ev.pop("exception", None)
    head = f"[{t:12.6f}] {level:<7} {phase or '-'} {name}: {event}"
    pairs = " ".join(f"{k}={_format_value(v)}" for k, v in ev.items())
    line = f"{head} {pairs}" if pairs else head
    return f"{line}\n{exc.rstrip()}" if exc else line


def render_json(event_dict: dict[str, Any]) -> str:
    ev = {"t": round(event_dict["t"], 6), "event": event_dict.get("event", "")}
    ev.update((k, v) for k, v in event_dict.items() if k not in ev)
    return json.dumps(ev, default=str, separators=(",", ":"))


def configure(*, console: IO[str] | int | str | None = None, kmsg: str | int | None = None,
              json: bool = False, phase_getter: PhaseGetter | None = None,
              level: str = "info", clock: Callable[[], float] = time.monotonic) -> Sinks:
    """Configure structlog for this process; safe to call again (reconfigures).

    Helper daemons call ``configure()``: one line per event on stderr, which
    their supervisor captures.

    ``console``: a text stream, an fd, or a device path such as /dev/console
    (default: stderr). ``kmsg``: a path such as /dev/kmsg, an fd, or None.
    A path that cannot be opened is reported on the console and skipped.
    """
    global _current
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
    renderer = render_json if json else render_kv

    def phase() -> str:
        try:
            return phase_getter() if phase_getter else ""
        except Exception:  # policy: a broken getter costs the field, not the event
            return "?"

    def stamp(logger: Any, method: str, event_dict: Any) -> dict[str, Any]:
        head = {"t": clock(), "level": _METHOD_LEVEL.get(method, method), "phase": phase(),
                "logger": logger.name}
        head.update(event_dict)
        return head

    def render(logger: Any, method: str, event_dict: Any) -> str:
        return renderer(event_dict)

    structlog.configure(
        processors=[stamp, format_exc_info, render],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=lambda *args: _SinkLogger(sinks, str(args[0]) if args else ""),
        cache_logger_on_first_use=False,
    )
    if _current is not None:
        _current.close()
    _current = sinks
    log = structlog.get_logger("log")
    for event, error in problems:
        log.warning(event, error=error)
    return sinks
