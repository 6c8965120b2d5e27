"""The NOTIFY_SOCKET listener: sd_notify datagrams, attributed by kernel credentials.

The socket has SO_PASSCRED, so every datagram carries the sender's pid as
the kernel saw it. The supervisor maps that pid to a service (its main pid,
its session, or its cgroup); the message text never names a service, so one
service cannot mark another ready. Unattributable messages are dropped with
a warning. Understood: READY=1, STATUS=, STOPPING=1, MAINPID=.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from talos_init.log import get_logger
from talos_init.loop import Loop

log = get_logger("service")

MAX_MESSAGE = 4096
_UCRED = struct.Struct("iII")  # pid, uid, gid


def parse(data: bytes) -> dict[str, str]:
    fields = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


class NotifyListener:
    def __init__(self, loop: Loop, path: Path, attribute: Callable[[int], str | None],
                 on_message: Callable[[str, dict[str, str], int], None]):
        self.loop, self.path = loop, path
        self.attribute, self.on_message = attribute, on_message
        self.dropped = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.unlink()  # a stale socket from an earlier PID 1 run
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
                                  | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        self.sock.bind(str(path))
        # Services may run as other users; credentials, not the mode, say who is who.
        os.chmod(path, 0o666)
        loop.add_reader(self.sock.fileno(), self.drain)

    def drain(self) -> None:
        """Handle every queued message now (also called before an exit is handled)."""
        while True:
            try:
                data, ancillary, flags, _ = self.sock.recvmsg(
                    MAX_MESSAGE, socket.CMSG_SPACE(_UCRED.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("notify_receive_failed", error=str(exc))
                return
            pid = None
            for level, kind, cdata in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _UCRED.unpack(cdata[:_UCRED.size])[0]
            if flags & socket.MSG_TRUNC or not pid:
                self.dropped += 1
                log.warning("notify_message_dropped", pid=pid,
                            why="truncated" if flags & socket.MSG_TRUNC else "no credentials")
                continue
            service = self.attribute(pid)
            if service is None:
                self.dropped += 1
                log.warning("notify_message_unattributed", pid=pid,
                            message=data[:200].decode("utf-8", "replace"))
                continue
            self.on_message(service, parse(data), pid)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        try:
            self.path.unlink()
        except OSError:
            pass
