"""sd_notify(3): one datagram to $NOTIFY_SOCKET. Local until talos_init.sdnotify lands on main."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1"); False when no socket is set or the send fails."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode(), path)
        return True
    except OSError:
        return False  # the supervisor is gone or restarting: readiness is best effort
