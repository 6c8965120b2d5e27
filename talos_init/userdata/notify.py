"""sd_notify for the userdata service: one datagram to ``$NOTIFY_SOCKET``.

Until the services helper's ``talos_init.sdnotify`` lands (the lead unifies them),
this is the small local send the BRIEF allows. No socket set: nothing to do.
"""

from __future__ import annotations

import os
import socket


def notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send e.g. ``READY=1`` or ``STATUS=...``; False when there is no socket or the send fails."""
    path = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode(), path)
    except OSError:
        return False  # readiness reporting must never crash the service
    return True
