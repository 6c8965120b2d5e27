"""Readiness and health probes on the Loop: http GET, tcp connect, unix connect.

Non-blocking sockets watched by the loop, one attempt per period, each with
its own timeout timer: no threads, no busy polling. Hosts are IP literals or
localhost (checked at load), so no name is ever resolved here.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from talos_init.loop import Loop, Timer
from talos_init.service.definition import Probe

Result = Callable[[bool, str], None]


def _address(probe: Probe) -> tuple[int, str | tuple[str, int], bytes]:
    if probe.kind == "unix":
        return socket.AF_UNIX, probe.target, b""
    if probe.kind == "http":
        parts = urlsplit(probe.target)
        host, port = parts.hostname or "", parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        request = (f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\n"
                   "User-Agent: talos-init-probe\r\nConnection: close\r\n\r\n").encode()
    else:
        host, _, p = probe.target.rpartition(":")
        host, port, request = host.strip("[]"), int(p), b""
    if host == "localhost":
        host = "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, port), request


class Prober:
    """Runs ``probe`` every period after the initial delay; reports each result."""

    def __init__(self, loop: Loop, probe: Probe, on_result: Result):
        self.loop, self.probe, self.on_result = loop, probe, on_result
        self._timer: Timer | None = None
        self._deadline: Timer | None = None
        self._sock: socket.socket | None = None
        self._buf = b""
        self.attempts = 0

    def start(self) -> None:
        self._timer = self.loop.call_later(self.probe.initial_delay, self._attempt)

    def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer = None
        self._close()

    def _close(self) -> None:
        if self._deadline:
            self._deadline.cancel()
            self._deadline = None
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self.loop.remove_writer(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _attempt(self) -> None:
        self._timer = None
        self.attempts += 1
        family, address, self._request = _address(self.probe)
        self._buf = b""
        sock = socket.socket(family,
                             socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self._sock = sock
        self._deadline = self.loop.call_later(self.probe.timeout, self._finish, False,
                                              f"timed out after {self.probe.timeout:g}s")
        rc = sock.connect_ex(address)
        if rc in (0, errno.EINPROGRESS, errno.EAGAIN):
            self.loop.add_writer(sock.fileno(), self._connected)
        else:
            self._finish(False, f"connect {self.probe.target}: {errno.errorcode.get(rc, rc)}")

    def _connected(self) -> None:
        assert self._sock is not None
        self.loop.remove_writer(self._sock.fileno())
        rc = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if rc:
            self._finish(False, f"connect {self.probe.target}: {errno.errorcode.get(rc, rc)}")
            return
        if self.probe.kind != "http":
            self._finish(True, f"connected to {self.probe.target}")
            return
        try:
            self._sock.send(self._request)  # a few dozen bytes: fits a fresh socket's buffer
        except OSError as exc:
            self._finish(False, f"send: {exc.strerror}")
            return
        self.loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._finish(False, f"receive: {exc.strerror}")
            return
        self._buf += data
        line, sep, _ = self._buf.partition(b"\r\n")
        if not sep and data and len(self._buf) < 4096:
            return  # the status line is not complete yet
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            code = int(parts[1])
            self._finish(200 <= code < 400, f"GET {self.probe.target}: HTTP {code}")
        else:
            self._finish(False, f"GET {self.probe.target}: no HTTP status line")

    def _finish(self, ok: bool, message: str) -> None:
        if self._sock is None:
            return  # already finished (timeout raced the answer)
        self._close()
        self._timer = self.loop.call_later(self.probe.period, self._attempt)
        self.on_result(ok, message)
