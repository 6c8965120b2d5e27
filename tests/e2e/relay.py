"""QEMU guestfwd helper: one guest connection on stdin/stdout <-> a host loopback TCP port.

QEMU runs this once per guest connection (``guestfwd=...-cmd:``), so the
userdata server can take any number of requests.
"""

import os
import selectors
import socket
import sys


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    if host not in ("127.0.0.1", "::1"):
        raise SystemExit(f"relay: refusing non-loopback address {host}")
    conn = socket.create_connection((host, port))
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    sel.register(conn, selectors.EVENT_READ)
    open_sides = 2
    while open_sides:
        for key, _ in sel.select():
            if key.fileobj == 0:
                data = os.read(0, 65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    sel.unregister(0)
                    open_sides -= 1
                else:
                    conn.sendall(data)
            else:
                data = conn.recv(65536)
                if not data:
                    sel.unregister(conn)
                    open_sides -= 1
                    os.close(1)
                else:
                    while data:
                        data = data[os.write(1, data):]


if __name__ == "__main__":
    main()
