"""Who may hold which of apid's slots: the decisions only, no sockets (the server calls in).

Two pools, counted apart:

- handshakes: connections that have not proven who they are. Each one gets a
  short deadline. One address holds at most ``handshakes_per_source``: its
  newcomer replaces its own handshake that got least far (sent nothing, then
  half a ClientHello, then a whole one), the one quiet longest among equals.
  A real client gets past the ClientHello in its first packet, so silent or
  stalled connections from its own address cannot push it out. When all
  ``max_handshakes`` are taken, the newcomer replaces that handshake of the
  busiest address, so a crowd from some addresses never keeps the others
  from starting a handshake.
- connections: authenticated clients, identified by their certificate. A
  non-admin certificate holds at most ``connections_per_client``, and the last
  ``admin_reserve`` slots are for admins only.

Follow streams (``logs -f``, ``events -f``, ``dmesg -f``) may stay open and
idle for days, so they are counted apart again: ``follows_per_client`` per
certificate, ``max_follows`` in all with ``follow_admin_reserve`` for admins.
Calls that end by themselves (``read``, a log tail) never wait for a follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Caps:
    max_handshakes: int = 64
    handshakes_per_source: int = 8
    max_connections: int = 64
    connections_per_client: int = 16  # non-admin certificates
    admin_reserve: int = 8  # of max_connections, for os:admin only
    max_follows: int = 16
    follows_per_client: int = 4
    follow_admin_reserve: int = 4  # of max_follows


@dataclass
class Handshake:
    source: str
    evict: Callable[[], None]  # drops the connection
    seen: int  # when bytes last came (a counter: only the order matters)
    progress: int = 0  # 0 nothing came, 1 bytes came, 2 a whole ClientHello was answered

    def rank(self) -> tuple[int, int]:
        return (self.progress, self.seen)  # the smallest is evicted first


@dataclass
class Admission:
    caps: Caps
    _handshakes: dict[str, dict[int, Handshake]] = field(default_factory=dict)  # per source
    _handshake_count: int = 0
    _connections: dict[str, int] = field(default_factory=dict)  # client -> open connections
    connections: int = 0
    _follows: dict[str, int] = field(default_factory=dict)  # client -> open follows
    follows: int = 0
    _next_id: int = 0
    _clock: int = 0

    # -- handshakes ----------------------------------------------------------------

    def begin_handshake(self, source: str, evict: Callable[[], None]) -> int:
        """A ticket for this handshake, made room for as the module doc says."""
        mine = self._handshakes.get(source)
        if mine is not None and len(mine) >= self.caps.handshakes_per_source:
            self._evict(source)
        elif self._handshake_count >= self.caps.max_handshakes:
            most = max(len(h) for h in self._handshakes.values())
            busiest = [s for s, h in self._handshakes.items() if len(h) == most]
            self._evict(min(busiest, key=lambda s: min(h.rank() for h in self._handshakes[s].values())))
        self._next_id += 1
        self._clock += 1
        self._handshakes.setdefault(source, {})[self._next_id] = Handshake(source, evict, self._clock)
        self._handshake_count += 1
        return self._next_id

    def touch(self, source: str, ticket: int, progress: int) -> None:
        """Bytes came on this handshake, which got as far as ``progress`` (see Handshake)."""
        h = self._handshakes.get(source, {}).get(ticket)
        if h is not None:
            self._clock += 1
            h.seen = self._clock
            h.progress = max(h.progress, progress)

    def end_handshake(self, source: str, ticket: int) -> None:
        mine = self._handshakes.get(source)
        if mine is not None and mine.pop(ticket, None) is not None:
            self._handshake_count -= 1
            if not mine:
                del self._handshakes[source]

    def _evict(self, source: str) -> None:
        ticket, h = min(self._handshakes[source].items(), key=lambda item: item[1].rank())
        self.end_handshake(source, ticket)
        h.evict()

    def handshakes(self, source: str | None = None) -> int:
        if source is None:
            return self._handshake_count
        return len(self._handshakes.get(source, ()))

    # -- authenticated connections ------------------------------------------------------

    def admit(self, client: str, admin: bool) -> str | None:
        """Take a connection slot for this certificate, or say why not."""
        if admin:
            if self.connections >= self.caps.max_connections:
                return f"all {self.caps.max_connections} connections are in use"
        else:
            shared = self.caps.max_connections - self.caps.admin_reserve
            if self.connections >= shared:
                return (f"all {shared} connections open to non-admin clients are in use "
                        f"({self.caps.admin_reserve} more are kept for admins)")
            if self._connections.get(client, 0) >= self.caps.connections_per_client:
                return (f"your certificate already has {self.caps.connections_per_client} "
                        "connections open")
        self.connections += 1
        self._connections[client] = self._connections.get(client, 0) + 1
        return None

    def release(self, client: str) -> None:
        self.connections -= 1
        left = self._connections[client] - 1
        if left:
            self._connections[client] = left
        else:
            del self._connections[client]

    # -- follow streams -----------------------------------------------------------------

    def open_follow(self, client: str, admin: bool) -> str | None:
        """Take a follow slot for this certificate, or say why not."""
        shared = self.caps.max_follows - (0 if admin else self.caps.follow_admin_reserve)
        if self.follows >= shared:
            return (f"all {shared} follow streams open to "
                    f"{'any client' if admin else 'non-admin clients'} are in use")
        if self._follows.get(client, 0) >= self.caps.follows_per_client:
            return f"your certificate already has {self.caps.follows_per_client} follow streams open"
        self.follows += 1
        self._follows[client] = self._follows.get(client, 0) + 1
        return None

    def close_follow(self, client: str) -> None:
        self.follows -= 1
        left = self._follows[client] - 1
        if left:
            self._follows[client] = left
        else:
            del self._follows[client]
