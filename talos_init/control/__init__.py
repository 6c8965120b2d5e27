"""PID 1's control socket: a root-only, versioned JSON-lines protocol.

``protocol`` holds the wire format (no I/O), ``server`` serves it on PID 1's
``Loop``, ``client`` is the asyncio client apid uses.
"""

from talos_init.control.protocol import VERSION, ControlError

__all__ = ["VERSION", "ControlError"]
