"""sd_notify for talos-init's own daemons: send ``READY=1`` (and friends) to PID 1.

Sends one datagram to the unix socket named by ``$NOTIFY_SOCKET`` (a path, or
``@name`` for the abstract namespace). Without ``$NOTIFY_SOCKET`` it does
nothing and returns False, so a daemon runs the same outside the supervisor.
"""

from __future__ import annotations

import os
import socket


def notify(message: str, socket_path: str | None = None) -> bool:
    """Send ``message`` (e.g. "READY=1\\nSTATUS=serving"); True if it was sent."""
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode("utf-8"), address)
    return True


def try_notify(message: str) -> bool:
    """``notify``, but a failed send is False instead of an error: readiness
    reporting must never crash a daemon (the next report will try again)."""
    try:
        return notify(message)
    except OSError:
        return False


def ready(status: str | None = None) -> bool:
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def status(text: str) -> bool:
    return notify(f"STATUS={text}")
