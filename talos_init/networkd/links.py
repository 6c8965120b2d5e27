"""The links of this network namespace, kept current from RTM_NEWLINK/RTM_DELLINK events.

Subscribe first, dump second: a link that appears between the two is seen
either way. Waiting for a link is waiting for an event, never polling.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from talos_init.log import get_logger
from talos_init.networkd.apply import dump
from talos_init.networkd.ethtool import driver_info
from talos_init.networkd.model import Selector

log = get_logger("networkd")

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
# Link kinds that DHCP-on-carrier may use; virtual links we create ourselves are not candidates.
CANDIDATE_KINDS = {None, "veth"}


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str | None
    kind: str | None  # IFLA_INFO_KIND: None for physical NICs, "veth", "vlan", "bond"...
    up: bool  # administratively up (IFF_UP)
    carrier: bool
    mtu: int
    master: int | None
    loopback: bool
    perm_addr: str | None = None
    driver: str | None = None  # ethtool driver name, e.g. virtio_net
    bus_path: str | None = None  # ethtool bus info, e.g. 0000:00:03.0

    @property
    def physical(self) -> bool:
        return self.bus_path is not None

    def matches(self, sel: Selector) -> bool:
        """All the deviceSelector's patterns match this link."""
        checks = (
            (sel.hardware_addr, self.mac),
            (sel.permanent_addr, self.perm_addr),
            (sel.driver, self.driver),
            (sel.bus_path, self.bus_path),
        )
        if any(
            pattern is not None and not fnmatch.fnmatchcase(value or "", pattern)
            for pattern, value in checks
        ):
            return False
        return sel.physical is None or sel.physical == self.physical

    @property
    def candidate(self) -> bool:
        """A link that the early stage may run DHCP on."""
        return not self.loopback and self.kind in CANDIDATE_KINDS and self.master is None

    def describe(self) -> str:
        state = "carrier" if self.carrier else ("no carrier" if self.up else "down")
        return f"{self.name} ({state})"


def link_from_msg(msg: Any) -> Link:
    flags = msg.get("flags") or 0
    return Link(
        index=msg["index"],
        name=msg.get("ifname"),
        mac=(msg.get("address") or "").lower() or None,
        kind=msg.get(("linkinfo", "kind")),
        up=bool(flags & IFF_UP),
        carrier=bool(msg.get("carrier")) and bool(flags & IFF_UP),
        mtu=msg.get("mtu") or 0,
        master=msg.get("master") or None,
        loopback=bool(flags & IFF_LOOPBACK),
        perm_addr=(msg.get("perm_address") or "").lower() or None,
    )


class LinkTable:
    """Current links; calls `on_change(old, new)` (None for added/removed) on every change."""

    def __init__(self, on_change: Callable[[Link | None, Link | None], None] | None = None):
        self.by_index: dict[int, Link] = {}
        self.on_change = on_change
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, events: Any, ipr: Any) -> None:
        """`events` is an AsyncIPRoute already bound to RTMGRP_LINK; `ipr` is for the dump."""
        self._ipr = ipr
        for msg in await dump(ipr.get_links):
            self._update("RTM_NEWLINK", msg)
        self._task = asyncio.create_task(self._follow(events), name="netlink link events")

    async def _follow(self, events: Any) -> None:
        while True:
            try:
                async for msg in events.get():
                    if msg.get("event") in ("RTM_NEWLINK", "RTM_DELLINK"):
                        self._update(msg["event"], msg)
            except asyncio.CancelledError:
                raise
            except (
                Exception
            ) as e:  # e.g. ENOBUFS after an event burst: events were lost, so re-dump
                log.warning("link_events_resync", error=f"{type(e).__name__}: {e}")
                await self._resync()

    async def _resync(self) -> None:
        fresh = {msg["index"]: msg for msg in await dump(self._ipr.get_links)}
        for index in set(self.by_index) - set(fresh):
            self._update("RTM_DELLINK", {"index": index})
        for msg in fresh.values():
            self._update("RTM_NEWLINK", msg)

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    def _update(self, event: str, msg: Any) -> None:
        index = msg["index"]
        old = self.by_index.get(index)
        if event == "RTM_DELLINK":
            new = None
            self.by_index.pop(index, None)
        else:
            new = link_from_msg(msg)
            if old is not None and old.name == new.name:
                new = dataclasses.replace(new, driver=old.driver, bus_path=old.bus_path)
            else:  # new or renamed: ask the driver once
                driver, bus = driver_info(new.name)
                new = dataclasses.replace(new, driver=driver, bus_path=bus)
            if new == old:
                return
            self.by_index[index] = new
        if old == new:
            return
        self._changed.set()
        self._changed = asyncio.Event()
        if self.on_change:
            self.on_change(old, new)

    def by_name(self, name: str) -> Link | None:
        return next((link for link in self.by_index.values() if link.name == name), None)

    def find(self, selector: Selector) -> Link | None:
        if selector.name is not None:
            return self.by_name(selector.name)
        # Several links share a MAC (bond slaves, VLANs): the one that is not virtual wins, then the first.
        matches = [
            link for link in self.by_index.values() if not link.loopback and link.matches(selector)
        ]
        matches.sort(key=lambda link: (link.kind not in CANDIDATE_KINDS, link.index))
        return matches[0] if matches else None

    def describe(self) -> str:
        return ", ".join(sorted(link.describe() for link in self.by_index.values())) or "none"

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds, re-checking on each link event; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True
