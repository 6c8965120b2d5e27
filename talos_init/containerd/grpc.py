"""containerd's gRPC API without a gRPC library: HTTP/2 on its unix socket, protobuf by hand.

HTTP/2 framing, HPACK and flow control come from ``h2`` (pure Python); the
few protobuf messages we need are written and read with ``field``/``decode``
(field numbers from containerd 1.6's ``api/services/*/v1/*.proto``). One
``Connection`` carries calls one after the other: unary, server-streaming
(messages read as they arrive) and client/bidi-streaming (``Call.send``
waits for the peer's flow-control window, so memory stays bounded by one
message). Blocking: callers run it in a worker thread.
"""

from __future__ import annotations

import socket
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field as dc_field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

MAX_MESSAGE = 16 * 1024 * 1024  # containerd's own default receive limit

# gRPC status codes we act on.
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS = 0, 1, 2, 3, 5, 6
FAILED_PRECONDITION, UNAVAILABLE = 9, 14


class GrpcError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"grpc status {status}: {message}")
        self.status = status
        self.message = message


# -- protobuf wire format ----------------------------------------------------------------

def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 negatives, as protobuf encodes them
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value: bytes | str | int) -> bytes:
    """One field: ints as varints, str/bytes length-delimited (sub-messages are bytes)."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def string_map(number: int, values: dict[str, str]) -> bytes:
    """A ``map<string, string>`` field: one entry message per pair."""
    return b"".join(field(number, field(1, k) + field(2, v)) for k, v in sorted(values.items()))


def field_mask(number: int, paths: list[str]) -> bytes:
    return field(number, b"".join(field(1, p) for p in paths))


def decode(buf: bytes) -> dict[int, list[Any]]:
    """Fields by number; varints as int, length-delimited as bytes, fixed ones as bytes."""
    out: dict[int, list[Any]] = {}
    i, n = 0, len(buf)

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < n:
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value: Any = varint()
        elif wire == 2:
            length = varint()
            if i + length > n:
                raise ValueError("truncated field")
            value, i = bytes(buf[i:i + length]), i + length
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def get_str(fields: dict[int, list[Any]], number: int) -> str:
    values = fields.get(number)
    return values[-1].decode("utf-8", errors="replace") if values else ""


def get_int(fields: dict[int, list[Any]], number: int) -> int:
    values = fields.get(number)
    return int(values[-1]) if values else 0


def get_map(fields: dict[int, list[Any]], number: int) -> dict[str, str]:
    out = {}
    for entry in fields.get(number, []):
        kv = decode(entry)
        out[get_str(kv, 1)] = get_str(kv, 2)
    return out


# -- gRPC over HTTP/2 ---------------------------------------------------------------------------

@dataclass
class _Stream:
    buffer: bytearray = dc_field(default_factory=bytearray)
    messages: deque[bytes] = dc_field(default_factory=deque)
    headers: dict[str, str] = dc_field(default_factory=dict)
    ended: bool = False


class Call:
    """One open call: ``send`` messages, ``recv`` replies, ``finish`` for the status."""

    def __init__(self, conn: Connection, stream_id: int, method: str):
        self._conn = conn
        self.id = stream_id
        self.method = method
        self._sent_end = False

    def send(self, message: bytes, end: bool = False) -> None:
        self._conn._send(self.id, struct.pack(">BI", 0, len(message)) + message, end)
        self._sent_end = end

    def close_send(self) -> None:
        if not self._sent_end:
            self._conn._send(self.id, b"", True)
            self._sent_end = True

    def recv(self) -> bytes | None:
        """The next message, or None once the call has ended well (GrpcError if not)."""
        st = self._conn._streams.get(self.id)
        if st is None:
            return None  # ended and reported already
        while not st.messages:
            if st.ended:
                del self._conn._streams[self.id]  # the call is over: forget it
                _check_status(st)
                return None
            self._conn._pump()
        return st.messages.popleft()

    def finish(self) -> list[bytes]:
        """Half-close, read what is left, raise GrpcError for a non-zero status."""
        self.close_send()
        rest = []
        while (msg := self.recv()) is not None:
            rest.append(msg)
        return rest

    def cancel(self) -> None:
        if self._conn._streams.pop(self.id, None) is not None:
            self._conn._reset(self.id)


class Connection:
    """Calls one after another (or interleaved) on one HTTP/2 connection to containerd."""

    def __init__(self, socket_path: str, timeout: float = 30.0):
        self.socket_path = socket_path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(socket_path)
        except OSError:
            self.sock.close()
            raise
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        # Replies can be large (a layer read back): open the receive window wide.
        self.h2.increment_flow_control_window(MAX_MESSAGE)
        self._streams: dict[int, _Stream] = {}
        self._flush()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------

    def open(self, method: str, namespace: str, headers: dict[str, str] | None = None) -> Call:
        sid = self.h2.get_next_available_stream_id()
        self._streams[sid] = _Stream()
        self.h2.send_headers(sid, [
            (":method", "POST"), (":scheme", "http"), (":path", method),
            (":authority", "containerd"), ("content-type", "application/grpc"),
            ("te", "trailers"), ("containerd-namespace", namespace),
            *sorted((headers or {}).items())])
        self._flush()
        return Call(self, sid, method)

    def unary(self, method: str, message: bytes, namespace: str,
              headers: dict[str, str] | None = None) -> bytes:
        call = self.open(method, namespace, headers)
        call.send(message, end=True)
        replies = call.finish()
        return replies[0] if replies else b""

    def server_stream(self, method: str, message: bytes, namespace: str,
                      headers: dict[str, str] | None = None) -> Iterator[bytes]:
        call = self.open(method, namespace, headers)
        call.send(message, end=True)
        try:
            while (msg := call.recv()) is not None:
                yield msg
        finally:
            call.cancel()  # a no-op once the call has ended

    # -- HTTP/2 plumbing -----------------------------------------------------------------

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def _send(self, sid: int, data: bytes, end: bool) -> None:
        view = memoryview(data)
        while True:
            st = self._streams.get(sid)
            if st is None or st.ended:  # containerd answered early (an error): its status says why
                if st is not None:
                    _check_status(st)
                raise GrpcError(UNKNOWN, "containerd ended the call before the request was sent")
            window = self.h2.local_flow_control_window(sid)
            if view and window <= 0:
                self._pump()  # wait for WINDOW_UPDATE
                continue
            n = min(len(view), window, self.h2.max_outbound_frame_size)
            last = n == len(view)
            self.h2.send_data(sid, view[:n].tobytes(), end_stream=end and last)
            view = view[n:]
            self._flush()
            if last:
                return

    def _reset(self, sid: int) -> None:
        try:
            self.h2.reset_stream(sid, 8)  # CANCEL
            self._flush()
        except (h2.exceptions.ProtocolError, OSError):
            pass

    def _pump(self) -> None:
        """Read once from the socket and dispatch what came (blocks up to the timeout)."""
        try:
            data = self.sock.recv(262144)
        except TimeoutError:
            raise GrpcError(UNAVAILABLE, "containerd did not answer in time") from None
        if not data:
            raise GrpcError(UNAVAILABLE, "containerd closed the connection mid-call")
        for event in self.h2.receive_data(data):
            st = self._streams.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if st is not None:
                    st.buffer += event.data
                    self._split(st)
            elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                if st is not None:
                    st.headers.update({str(k): str(v) for k, v in event.headers})
            elif isinstance(event, h2.events.StreamEnded):
                if st is not None:
                    st.ended = True
            elif isinstance(event, h2.events.StreamReset):
                if st is not None:
                    st.ended = True
                    st.headers.setdefault("grpc-status", str(UNAVAILABLE))
                    st.headers.setdefault("grpc-message",
                                          f"stream reset by containerd (code {event.error_code})")
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise GrpcError(UNAVAILABLE, f"containerd ended the connection ({event.error_code})")
        self._flush()

    @staticmethod
    def _split(st: _Stream) -> None:
        while len(st.buffer) >= 5:
            flag, length = struct.unpack(">BI", st.buffer[:5])
            if flag:
                raise GrpcError(UNKNOWN, "compressed gRPC message (not negotiated)")
            if length > MAX_MESSAGE:
                raise GrpcError(8, f"message over {MAX_MESSAGE} bytes")
            if len(st.buffer) < 5 + length:
                return
            st.messages.append(bytes(st.buffer[5:5 + length]))
            del st.buffer[:5 + length]



def _check_status(st: _Stream) -> None:
    status = int(st.headers.get("grpc-status", str(UNKNOWN)))
    if status != OK:
        raise GrpcError(status, st.headers.get("grpc-message", "no message"))


@dataclass
class Client:
    """Opens a connection per unary ``call``; ``connect`` for many calls on one."""

    socket_path: str = "/run/containerd/containerd.sock"
    timeout: float = 10.0

    def connect(self, timeout: float | None = None) -> Connection:
        return Connection(self.socket_path, self.timeout if timeout is None else timeout)

    def call(self, method: str, message: bytes, namespace: str,
             headers: dict[str, str] | None = None) -> bytes:
        """One unary call; GrpcError for a non-zero grpc-status, OSError when unreachable."""
        with self.connect() as conn:
            return conn.unary(method, message, namespace, headers)
