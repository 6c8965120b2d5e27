"""The control socket server, run by PID 1 on its ``Loop``.

Non-blocking from end to end: requests are read as they arrive, replies are
queued per connection and written when the peer can take them. Every
resource is bounded (clients, line length, queued output, streams, idle
time), so a slow or hostile client costs PID 1 at most its own buffer and is
then dropped. Only uid 0 (SO_PEERCRED) may talk to it; the socket is 0600.

Handlers are plain functions registered by PID 1:

    server.register("services.list", lambda params: [...])
    server.register_stream("logs", lambda params, stream: ...)

A unary handler returns a JSON-able result or raises ``ControlError``. A
stream handler sends items with ``stream.send(x)``, finishes with
``stream.end()`` or ``stream.fail(code, msg)`` (now or later, from any loop
callback), and learns that the client went away through ``stream.on_close``.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from talos_init.control import protocol
from talos_init.control.protocol import ControlError
from talos_init.log import get_logger
from talos_init.loop import Loop, Timer
from talos_init.record import record

log = get_logger("control")

UnaryHandler = Callable[[dict[str, Any]], Any]
StreamHandler = Callable[[dict[str, Any], "Stream"], None]

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@record(frozen=True)
class Limits:
    max_clients: int = 32
    max_line: int = 64 * 1024  # one request, bytes
    max_output: int = 1024 * 1024  # queued reply bytes per connection before it is dropped
    max_streams: int = 4  # open streams per connection
    idle_timeout: float = 60.0  # seconds without a request while no stream is open


class Stream:
    """One open stream; every method is safe after the stream has closed."""

    def __init__(self, conn: _Connection, rid: int | str, method: str):
        self._conn = conn
        self.id = rid
        self.method = method
        self.closed = False
        self._on_close: list[Callable[[], None]] = []

    def send(self, value: Any) -> bool:
        """Queue one item; False once the stream is closed (stop producing)."""
        if self.closed:
            return False
        self._conn.send(protocol.item(self.id, value))
        return not self.closed

    def end(self) -> None:
        if not self.closed:
            self._conn.send(protocol.end(self.id))
            self._finish()

    def fail(self, code: str, message: str) -> None:
        if not self.closed:
            self._conn.send(protocol.error(self.id, code, message))
            self._finish()

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` once when the stream ends for any reason."""
        if self.closed:
            callback()
        else:
            self._on_close.append(callback)

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._conn.streams.pop(self.id, None)
        if not self._conn.streams:
            self._conn.arm_idle()  # the idle clock starts when the last stream ends
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a broken cleanup must not leak into the loop's other work
                log.exception("stream_close_callback_failed", method=self.method)


class _Connection:
    def __init__(self, server: ControlServer, sock: socket.socket, peer_pid: int, peer_uid: int):
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.peer_pid = peer_pid
        self.peer_uid = peer_uid
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.streams: dict[int | str, Stream] = {}
        self.closed = False
        self.closing = False  # flush what is queued, then close
        self.writing = False
        self.idle: Timer | None = None
        self.last_active = 0.0

    # -- reading ---------------------------------------------------------------

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.close(f"read failed: {e}")
            return
        if not data:
            self.close("peer closed")
            return
        self.inbuf += data
        while not self.closed and not self.closing:
            nl = self.inbuf.find(b"\n")
            if nl < 0:
                if len(self.inbuf) > self.server.limits.max_line:
                    self.refuse(protocol.TOO_LARGE,
                                f"request longer than {self.server.limits.max_line} bytes")
                break
            line = bytes(self.inbuf[:nl])
            del self.inbuf[:nl + 1]
            if len(line) > self.server.limits.max_line:
                self.refuse(protocol.TOO_LARGE,
                            f"request longer than {self.server.limits.max_line} bytes")
                return
            if line.strip():
                self.server._dispatch(self, line)
        self.arm_idle()

    def refuse(self, code: str, message: str) -> None:
        """Answer with an error that has no request id, then hang up."""
        self.send(protocol.error(None, code, message))
        self.shutdown_after_flush()

    # -- writing -----------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if len(self.outbuf) + len(data) > self.server.limits.max_output:
            # Policy: a client that does not read loses its connection, never PID 1's time.
            self.close(f"client too slow: more than {self.server.limits.max_output} bytes queued")
            return
        self.outbuf += data
        self.flush()

    def flush(self) -> None:
        while self.outbuf and not self.closed:
            try:
                sent = self.sock.send(self.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self.close(f"write failed: {e}")
                return
            del self.outbuf[:sent]
        if self.closed:
            return
        if self.outbuf and not self.writing:
            self.server.loop.add_writer(self.fd, self.flush)
            self.writing = True
        elif not self.outbuf:
            if self.writing:
                self.server.loop.remove_writer(self.fd)
                self.writing = False
            if self.closing:
                self.close("done")

    def shutdown_after_flush(self) -> None:
        self.closing = True
        self.server.loop.remove_reader(self.fd)
        self.flush()

    # -- lifetime --------------------------------------------------------------

    def arm_idle(self) -> None:
        """Called on activity. One timer per connection, moved on only when it fires (a busy
        client must not fill the loop's heap with cancelled timers); none while a stream is
        open: a follower waits on us, and a re-armed timer would wake PID 1 for nothing."""
        loop = self.server.loop
        self.last_active = loop.clock()
        if self.streams or self.closed:
            if self.idle is not None:
                self.idle.cancel()
                self.idle = None
        elif self.idle is None:
            self.idle = loop.call_later(self.server.limits.idle_timeout, self.on_idle)

    def on_idle(self) -> None:
        self.idle = None
        if self.streams or self.closed:
            return
        left = self.last_active + self.server.limits.idle_timeout - self.server.loop.clock()
        if left > 0:
            self.idle = self.server.loop.call_later(left, self.on_idle)
        else:
            self.close("idle")

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self.idle is not None:
            self.idle.cancel()
        loop = self.server.loop
        loop.remove_reader(self.fd)
        loop.remove_writer(self.fd)
        for stream in list(self.streams.values()):
            stream._finish()
        self.sock.close()
        self.server._connections.discard(self)
        log.debug("control_client_closed", peer_pid=self.peer_pid, reason=reason)


class ControlServer:
    """Serves registered handlers on a unix socket; ``start()`` binds it."""

    def __init__(self, loop: Loop, path: Path | str, *, limits: Limits = Limits(),
                 allowed_uids: frozenset[int] = frozenset({0})):
        self.loop = loop
        self.path = Path(path)
        self.limits = limits
        self.allowed_uids = allowed_uids
        self._unary: dict[str, UnaryHandler] = {}
        self._stream: dict[str, StreamHandler] = {}
        self._connections: set[_Connection] = set()
        self._sock: socket.socket | None = None
        self.register("control.methods", lambda params: sorted([*self._unary, *self._stream]))

    # -- registry -----------------------------------------------------------------

    def register(self, method: str, handler: UnaryHandler) -> None:
        """``handler(params) -> result``; raise ControlError for a clean refusal."""
        self._check_new(method)
        self._unary[method] = handler

    def register_stream(self, method: str, handler: StreamHandler) -> None:
        """``handler(params, stream)``; the stream stays open until ended or the client leaves."""
        self._check_new(method)
        self._stream[method] = handler

    def _check_new(self, method: str) -> None:
        if method in self._unary or method in self._stream:
            raise ValueError(f"control method {method!r} is already registered")

    # -- socket --------------------------------------------------------------------

    def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.path.unlink()  # a socket left by an earlier PID 1 run (or a test)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                             | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # PID 1 is single-threaded: the umask change is ours alone
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self._sock = sock
        self.loop.add_reader(sock.fileno(), self._on_accept)
        log.info("control_socket_listening", path=str(self.path))

    def close(self) -> None:
        for conn in list(self._connections):
            conn.close("server closing")
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    @property
    def connections(self) -> int:
        return len(self._connections)

    def _on_accept(self) -> None:
        assert self._sock is not None
        for _ in range(16):  # a burst of clients cannot hold the loop for long
            try:
                sock, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE and friends: log and go on; the listener stays.
                log.warning("control_accept_failed", error=os.strerror(e.errno or errno.EIO))
                return
            sock.setblocking(False)
            pid, uid, _gid = _PEERCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
            conn = _Connection(self, sock, pid, uid)
            self._connections.add(conn)
            if uid not in self.allowed_uids:
                log.warning("control_client_refused", peer_pid=pid, peer_uid=uid)
                conn.refuse(protocol.PERMISSION_DENIED, f"uid {uid} may not use the control socket")
                continue
            if len(self._connections) > self.limits.max_clients:
                conn.refuse(protocol.OVERLOADED,
                            f"more than {self.limits.max_clients} control clients")
                continue
            self.loop.add_reader(conn.fd, conn.on_readable)
            conn.arm_idle()

    def _dispatch(self, conn: _Connection, line: bytes) -> None:
        rid: int | str | None = None
        try:
            req = protocol.parse_request(line)
            rid = req.id
            if req.id in conn.streams:
                raise ControlError(protocol.BAD_REQUEST, f"request id {req.id!r} is still streaming")
            unary = self._unary.get(req.method)
            if unary is not None:
                conn.send(protocol.result(req.id, unary(req.params)))
                return
            handler = self._stream.get(req.method)
            if handler is None:
                raise ControlError(protocol.UNKNOWN_METHOD, f"no method {req.method!r}")
            if len(conn.streams) >= self.limits.max_streams:
                raise ControlError(protocol.OVERLOADED,
                                   f"more than {self.limits.max_streams} streams on one connection")
            stream = Stream(conn, req.id, req.method)
            conn.streams[req.id] = stream
            try:
                handler(req.params, stream)
            except BaseException:
                stream._finish()  # the error below answers it
                raise
        except ControlError as e:
            conn.send(protocol.error(rid, e.code, e.message))
        except Exception as e:
            # Policy: a handler bug is the caller's error reply and a traceback in the log.
            log.exception("control_handler_failed", line=line[:200].decode(errors="replace"))
            conn.send(protocol.error(rid, protocol.INTERNAL, f"{type(e).__name__}: {e}"))
