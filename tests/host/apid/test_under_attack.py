"""apid holds under attack from unauthenticated and low-privilege clients (issue #22).

A real apid on 127.0.0.1; attackers connect from other loopback addresses
(127.0.0.2 and up), as a hostile machine on the network would.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PARTIAL_CLIENT_HELLO = bytes.fromhex("160301020001")  # a record header and one byte, then nothing


class Flood:
    """`count` connections from `source` that send nothing (or half a ClientHello) and
    reconnect whenever apid drops them, until stopped."""

    def __init__(self, target: tuple[str, int], source: str, count: int, partial: bool):
        self.target, self.source, self.partial = target, source, partial
        self.stop = threading.Event()
        self.connects = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                s = socket.create_connection(self.target, timeout=2, source_address=(self.source, 0))
            except OSError:
                self.stop.wait(0.01)
                continue
            self.connects += 1
            with s:
                try:
                    if self.partial:
                        s.sendall(PARTIAL_CLIENT_HELLO)
                    while not self.stop.is_set():
                        try:
                            if not s.recv(4096):
                                break  # dropped: reconnect at once
                        except TimeoutError:
                            continue
                except OSError:
                    pass


@contextmanager
def flood(node, sources: list[str], per_source: int, partial: bool = False) -> Iterator[list[Flood]]:
    floods = [Flood((node.host, node.port), src, per_source, partial) for src in sources]
    for f in floods:
        for t in f.threads:
            t.start()
    try:
        # The attack is on once every attacker thread has connected at least once.
        deadline = time.monotonic() + 30
        while sum(f.connects for f in floods) < len(sources) * per_source:
            assert time.monotonic() < deadline, "the flood never got going"
            time.sleep(0.05)
        yield floods
    finally:
        for f in floods:
            f.stop.set()
        for f in floods:
            for t in f.threads:
                t.join(10)


def test_silent_connection_flood_does_not_lock_out_admins(node):
    """64 silent connections from one address, reconnecting when dropped: admin calls succeed."""
    admin = node.osctlconfig("admin", ["os:admin"])
    with flood(node, ["127.0.0.2"], 64):
        for _ in range(5):
            r = node.osctl(admin, "version", timeout=60)
            assert r.returncode == 0 and "talos-init" in r.stdout, r.stderr


def test_partial_client_hello_flood_from_many_addresses_does_not_lock_out_admins(node):
    """Half ClientHellos from 12 addresses, 12 each, more than all handshake slots: admins get in."""
    admin = node.osctlconfig("admin", ["os:admin"])
    with flood(node, [f"127.0.0.{i}" for i in range(2, 14)], 12, partial=True):
        for _ in range(5):
            r = node.osctl(admin, "version", timeout=60)
            assert r.returncode == 0 and "talos-init" in r.stdout, r.stderr
    log = (node.tmp / "apid.log").read_text()
    assert "api_handshake_evicted" in log or "api_connection_refused" in log

