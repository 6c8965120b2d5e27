"""Driver name and bus path of a link, from the SIOCETHTOOL ETHTOOL_GDRVINFO ioctl.

The ioctl works in whatever network namespace this process is in, where
sysfs may still show another namespace's links.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
_DRVINFO = struct.Struct("I32s32s32s32s32s12sIIIII")  # struct ethtool_drvinfo


def driver_info(ifname: str) -> tuple[str | None, str | None]:
    """(driver, bus_info) such as ("virtio_net", "0000:00:03.0"); (None, None) when the link has no driver info."""
    buf = ctypes.create_string_buffer(_DRVINFO.pack(ETHTOOL_GDRVINFO, *([b""] * 6), 0, 0, 0, 0, 0))
    ifreq = struct.pack("16sP", ifname.encode()[:15], ctypes.addressof(buf))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
    except OSError:
        return None, None  # loopback and some virtual links have no ethtool driver info
    fields = _DRVINFO.unpack(buf.raw[: _DRVINFO.size])
    driver, bus = (fields[i].split(b"\0", 1)[0].decode(errors="replace") for i in (1, 4))
    return driver or None, bus or None
