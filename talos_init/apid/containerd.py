"""containerd's API, the small part apid needs: unary gRPC over HTTP/2 on a unix socket.

No gRPC library and no ``ctr`` on the node: HTTP/2 framing and HPACK come
from ``h2`` (hyper-h2, pure Python), and the few protobuf messages used are
read and written by hand below (field numbers from containerd 1.6's
``api/services/{containers,tasks}/v1`` and ``api/types/task``). Blocking:
apid calls it from a worker thread.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.events

MAX_RESPONSE = 16 * 1024 * 1024

TASK_STATUS = {0: "unknown", 1: "created", 2: "running", 3: "stopped", 4: "paused", 5: "pausing"}


class GrpcError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"grpc status {status}: {message}")
        self.status = status
        self.message = message


# -- protobuf wire format ----------------------------------------------------------------

def _varint(n: int) -> bytes:
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
            value, i = buf[i:i + length], i + length
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _str(fields: dict[int, list[Any]], number: int) -> str:
    values = fields.get(number)
    return values[-1].decode("utf-8", errors="replace") if values else ""


def _int(fields: dict[int, list[Any]], number: int) -> int:
    values = fields.get(number)
    return int(values[-1]) if values else 0


# -- gRPC ------------------------------------------------------------------------------------

@dataclass
class Client:
    socket_path: str = "/run/containerd/containerd.sock"
    timeout: float = 10.0

    def call(self, method: str, message: bytes, namespace: str) -> bytes:
        """One unary call; GrpcError for a non-zero grpc-status, OSError when unreachable."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
            conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
            conn.initiate_connection()
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, [
                (":method", "POST"), (":scheme", "http"), (":path", method),
                (":authority", "containerd"), ("content-type", "application/grpc"),
                ("te", "trailers"), ("containerd-namespace", namespace)])
            conn.send_data(stream, b"\0" + struct.pack(">I", len(message)) + message, end_stream=True)
            sock.sendall(conn.data_to_send())
            body = bytearray()
            headers: dict[str, str] = {}
            ended = False
            while not ended:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("containerd closed the connection mid-call")
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                        if len(body) > MAX_RESPONSE:
                            raise GrpcError(8, f"response over {MAX_RESPONSE} bytes")
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                        headers.update({str(k): str(v) for k, v in event.headers})
                    elif isinstance(event, h2.events.StreamEnded):
                        ended = True
                    elif isinstance(event, h2.events.StreamReset):
                        raise GrpcError(14, f"stream reset by containerd (code {event.error_code})")
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        raise GrpcError(14, f"containerd ended the connection ({event.error_code})")
                pending = conn.data_to_send()
                if pending:
                    sock.sendall(pending)
        status = int(headers.get("grpc-status", "2"))
        if status != 0:
            raise GrpcError(status, headers.get("grpc-message", "no message"))
        if len(body) < 5:
            return b""
        _flag, length = struct.unpack(">BI", bytes(body[:5]))
        return bytes(body[5:5 + length])

    # -- the calls apid makes ------------------------------------------------------------------

    def containers(self, namespace: str) -> list[dict[str, Any]]:
        """Containers in ``namespace`` with their task's pid and status, sorted by id."""
        listed = decode(self.call("/containerd.services.containers.v1.Containers/List", b"",
                                  namespace))
        tasks = {}
        for raw in decode(self.call("/containerd.services.tasks.v1.Tasks/List", b"",
                                    namespace)).get(1, []):
            t = decode(raw)
            # Tasks/List fills the task id (= its container id), not container_id (field 1).
            tasks[_str(t, 2) or _str(t, 1)] = {"pid": _int(t, 3) or None,
                                 "status": TASK_STATUS.get(_int(t, 4), "unknown")}
        out = []
        for raw in listed.get(1, []):
            c = decode(raw)
            labels = {}
            for entry in c.get(2, []):
                kv = decode(entry)
                labels[_str(kv, 1)] = _str(kv, 2)
            created = decode(c[8][-1]) if c.get(8) else {}
            cid = _str(c, 1)
            task = tasks.get(cid, {"pid": None, "status": "no task"})
            out.append({"namespace": namespace, "id": cid, "image": _str(c, 3),
                        "runtime": _str(decode(c[4][-1]), 1) if c.get(4) else "",
                        "created": _int(created, 1) or None,
                        "pod": labels.get("io.kubernetes.pod.name"),
                        "labels": labels, **task})
        return sorted(out, key=lambda x: x["id"])
