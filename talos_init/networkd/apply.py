"""Make the kernel's links, addresses and routes match a desired state, changing only the difference.

Ownership rules (what we may remove):
- addresses: on a *managed* link, every permanent global address that is not
  desired is removed. Link-local addresses and kernel-managed ones (SLAAC,
  temporary) are left alone.
- routes: only routes in the main table whose protocol is ours (static for
  config and ``ip=``, dhcp for leases) are removed when no longer desired.

Each failing step becomes an error naming the config path that asked for it;
the next steps still run. Applying the same desired state twice makes no
netlink change the second time (`ApplyResult.changes == 0`).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from talos_init.log import get_logger
from talos_init.networkd.model import Bond, ConfigError, IPInterface, Route

log = get_logger("networkd")

RTPROT_STATIC = 4
RTPROT_DHCP = 16
OUR_PROTOS = {RTPROT_STATIC, RTPROT_DHCP}
MAIN_TABLE = 254
RT_SCOPE_UNIVERSE = 0
IFA_F_PERMANENT = 0x80


@dataclass
class DesiredLink:
    name: str
    path: str
    kind: str = "existing"  # existing | vlan | bond
    parent: str | None = None
    vlan_id: int | None = None
    bond: Bond | None = None
    slaves: list[str] = field(default_factory=list)
    mtu: int | None = None


@dataclass(frozen=True)
class DesiredAddress:
    link: str
    address: IPInterface
    path: str


@dataclass(frozen=True)
class DesiredRoute:
    link: str
    route: Route
    proto: int = RTPROT_STATIC


@dataclass
class Desired:
    links: list[DesiredLink] = field(default_factory=list)
    addresses: list[DesiredAddress] = field(default_factory=list)
    routes: list[DesiredRoute] = field(default_factory=list)
    managed: set[str] = field(default_factory=set)  # links whose global addresses we own


@dataclass
class ApplyResult:
    changes: list[str] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)


def bond_attrs(bond: Bond) -> dict[str, int]:
    """pyroute2 keyword arguments (IFLA_BOND_* lower-cased without IFLA_) for a new bond."""
    return {"bond_mode": bond.mode, **bond.options}


def _route_key(
    family: int, dst: str, gateway: str | None, oif: int, metric: int, mtu: int | None
) -> tuple[Any, ...]:
    return (family, dst, gateway, oif, metric, mtu or None)


async def dump(method: Any, **kwarg: Any) -> list[Any]:
    """A complete netlink dump; retried when the kernel flags it inconsistent (EBUSY, NLM_F_DUMP_INTR)."""
    for attempt in range(10):
        try:
            return [msg async for msg in await method(**kwarg)]
        except NetlinkError as e:
            if e.code != errno.EBUSY or attempt == 9:
                raise
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def _reason(e: NetlinkError) -> str:
    return os.strerror(e.code) if e.code > 0 else str(e)


class Reconciler:
    def __init__(self, ipr: Any, sysctl: Path | None = Path("/proc/sys")):
        self.ipr = ipr  # an open AsyncIPRoute
        self.sysctl = sysctl  # /proc/sys/net is the calling process's network namespace

    async def _links(self) -> dict[str, Any]:
        return {msg.get("ifname"): msg for msg in await dump(self.ipr.get_links)}

    async def apply(self, desired: Desired) -> ApplyResult:
        result = ApplyResult()
        links = await self._links()
        await self._virtual_links(desired, links, result)
        links = await self._links()
        await self._link_settings(desired, links, result)
        await self._routes_remove(desired, links, result)
        await self._addresses(desired, links, result)
        await self._routes_add(desired, links, result)
        return result

    async def _change(
        self, result: ApplyResult, what: str, method: Any, *argv: Any, **kwarg: Any
    ) -> None:
        await method(*argv, **kwarg)
        result.changes.append(what)
        log.info("netlink_change", change=what)

    async def _virtual_links(
        self, desired: Desired, links: dict[str, Any], result: ApplyResult
    ) -> None:
        # Bonds first: a VLAN may sit on a bond.
        for d in sorted(desired.links, key=lambda d: {"bond": 0, "vlan": 1}.get(d.kind, 2)):
            if d.kind == "existing":
                continue
            have = links.get(d.name)
            if have is not None:
                kind = have.get(("linkinfo", "kind"))
                if kind != d.kind:
                    result.errors.append(
                        ConfigError(
                            d.path,
                            f"link {d.name} exists but is a {kind or 'physical'} "
                            f"link, not a {d.kind}",
                        )
                    )
                elif d.kind == "vlan" and have.get(("linkinfo", "data", "vlan_id")) != d.vlan_id:
                    result.errors.append(
                        ConfigError(d.path, f"link {d.name} exists with another VLAN id")
                    )
                continue
            try:
                if d.kind == "vlan":
                    parent = links.get(d.parent or "")
                    if parent is None:
                        result.errors.append(
                            ConfigError(d.path, f"parent link {d.parent} does not exist")
                        )
                        continue
                    await self._change(
                        result,
                        f"create vlan {d.name}",
                        self.ipr.link,
                        "add",
                        ifname=d.name,
                        kind="vlan",
                        link=parent["index"],
                        vlan_id=d.vlan_id,
                    )
                else:
                    assert d.bond is not None
                    await self._change(
                        result,
                        f"create bond {d.name}",
                        self.ipr.link,
                        "add",
                        ifname=d.name,
                        kind="bond",
                        **bond_attrs(d.bond),
                    )
            except NetlinkError as e:
                if e.code == errno.EEXIST and d.kind == "bond":
                    if await self._adopt_bond(d, result):
                        continue
                hint = (
                    " (the kernel lacks support for this link kind: module 8021q or bonding not loaded?)"
                    if e.code == errno.EOPNOTSUPP
                    else ""
                )
                result.errors.append(
                    ConfigError(d.path, f"cannot create {d.kind} {d.name}: {_reason(e)}{hint}")
                )

    async def _adopt_bond(self, d: DesiredLink, result: ApplyResult) -> bool:
        """Configure a bond the kernel made itself.

        Loading `bonding` for our RTM_NEWLINK creates bond0 (max_bonds=1), so our own create
        fails with EEXIST. Still down, that bond takes our mode and options.
        """
        have = (await self._links()).get(d.name)
        if have is None or have.get(("linkinfo", "kind")) != "bond" or have.get("flags", 0) & 1:
            return False
        assert d.bond is not None
        try:
            await self._change(
                result,
                f"configure bond {d.name} created by the kernel",
                self.ipr.link,
                "set",
                index=have["index"],
                kind="bond",
                **bond_attrs(d.bond),
            )
        except NetlinkError as e:
            result.errors.append(
                ConfigError(d.path, f"cannot configure bond {d.name}: {_reason(e)}")
            )
        return True

    async def _link_settings(
        self, desired: Desired, links: dict[str, Any], result: ApplyResult
    ) -> None:
        for d in desired.links:
            link = links.get(d.name)
            if link is None:
                continue  # already reported: creation failed or selector did not match
            index = link["index"]
            for slave in d.slaves:
                s = links.get(slave)
                if s is None:
                    result.errors.append(
                        ConfigError(f"{d.path}.bond.interfaces", f"no link named {slave}")
                    )
                    continue
                if s.get("master") == index:
                    continue
                try:
                    if s.get("flags", 0) & 1:
                        await self._change(
                            result,
                            f"set {slave} down to enslave it",
                            self.ipr.link,
                            "set",
                            index=s["index"],
                            state="down",
                        )
                    await self._change(
                        result,
                        f"enslave {slave} to {d.name}",
                        self.ipr.link,
                        "set",
                        index=s["index"],
                        master=index,
                    )
                    await self._change(
                        result,
                        f"set {slave} up",
                        self.ipr.link,
                        "set",
                        index=s["index"],
                        state="up",
                    )
                except NetlinkError as e:
                    result.errors.append(
                        ConfigError(
                            f"{d.path}.bond.interfaces",
                            f"cannot enslave {slave} to {d.name}: {_reason(e)}",
                        )
                    )
            if d.mtu is not None and link.get("mtu") != d.mtu:
                try:
                    await self._change(
                        result,
                        f"set {d.name} mtu {d.mtu}",
                        self.ipr.link,
                        "set",
                        index=index,
                        mtu=d.mtu,
                    )
                except NetlinkError as e:
                    result.errors.append(
                        ConfigError(
                            f"{d.path}.mtu", f"cannot set MTU {d.mtu} on {d.name}: {_reason(e)}"
                        )
                    )
            if not link.get("flags", 0) & 1:
                try:
                    await self._change(
                        result, f"set {d.name} up", self.ipr.link, "set", index=index, state="up"
                    )
                except NetlinkError as e:
                    result.errors.append(
                        ConfigError(d.path, f"cannot set {d.name} up: {_reason(e)}")
                    )

    async def _current_routes(self) -> dict[tuple[Any, ...], Any]:
        out = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in await dump(self.ipr.get_routes, family=family, table=MAIN_TABLE):
                if msg.get("proto") not in OUR_PROTOS or msg.get("type") != 1:  # unicast only
                    continue
                default = "0.0.0.0" if family == socket.AF_INET else "::"
                dst = f"{msg.get('dst') or default}/{msg.get('dst_len') or 0}"
                metrics = msg.get("metrics")
                key = _route_key(
                    family,
                    dst,
                    msg.get("gateway"),
                    msg.get("oif"),
                    msg.get("priority") or 0,
                    metrics.get("mtu") if metrics else None,
                )
                out[key] = msg
        return out

    def _desired_routes(
        self, desired: Desired, links: dict[str, Any]
    ) -> dict[tuple[Any, ...], DesiredRoute]:
        out = {}
        for d in desired.routes:
            link = links.get(d.link)
            if link is None:
                continue
            family = socket.AF_INET if d.route.family == 4 else socket.AF_INET6
            gw = str(d.route.gateway) if d.route.gateway else None
            out[
                _route_key(
                    family, str(d.route.network), gw, link["index"], d.route.metric, d.route.mtu
                )
            ] = d
        return out

    async def _routes_remove(
        self, desired: Desired, links: dict[str, Any], result: ApplyResult
    ) -> None:
        want = self._desired_routes(desired, links)
        for key, msg in (await self._current_routes()).items():
            if key in want:
                continue
            # Delete exactly what the dump showed: the kernel matches scope and protocol too.
            kw = {
                "family": key[0],
                "dst": key[1],
                "oif": key[3],
                "priority": key[4],
                "proto": msg.get("proto"),
                "scope": msg.get("scope"),
                "table": MAIN_TABLE,
            }
            if key[2] is not None:
                kw["gateway"] = key[2]
            try:
                await self._change(
                    result,
                    f"remove route {key[1]} via {key[2]} metric {key[4]}",
                    self.ipr.route,
                    "del",
                    **kw,
                )
            except NetlinkError as e:
                if e.code != errno.ESRCH:  # gone already, e.g. with its address
                    result.errors.append(
                        ConfigError("(stale route)", f"cannot remove {key[1]}: {_reason(e)}")
                    )

    async def _routes_add(
        self, desired: Desired, links: dict[str, Any], result: ApplyResult
    ) -> None:
        have = await self._current_routes()
        for key, d in self._desired_routes(desired, links).items():
            if key in have:
                continue
            r = d.route
            kw: dict[str, Any] = {
                "family": key[0],
                "dst": str(r.network),
                "oif": key[3],
                "priority": r.metric,
                "proto": d.proto,
                "table": MAIN_TABLE,
            }
            if r.gateway is not None:
                kw["gateway"] = str(r.gateway)
            else:
                kw["scope"] = 253  # link: directly connected
            if r.source is not None:
                kw["prefsrc"] = str(r.source)
            if r.mtu is not None:
                kw["metrics"] = {"mtu": r.mtu}
            try:
                # IPv4 refuses a second route to a prefix with the same metric (two DHCP links,
                # each with a default route) unless appended. IPv6 would merge appended routes
                # into one multipath route, which the dump could no longer match: plain add.
                await self._change(
                    result,
                    f"add route {r.network} via {r.gateway} dev {d.link} metric {r.metric}",
                    self.ipr.route,
                    "append" if r.family == 4 else "add",
                    **kw,
                )
            except NetlinkError as e:
                result.errors.append(self._route_error(d, e))

    def _route_error(self, d: DesiredRoute, e: NetlinkError) -> ConfigError:
        r = d.route
        if e.code == errno.ENETUNREACH and r.gateway is not None:
            return ConfigError(
                f"{r.path}.gateway",
                f"gateway {r.gateway} is not reachable from {d.link}: "
                f"no address on {d.link} has it in its network",
            )
        if e.code == errno.EEXIST:
            return ConfigError(
                r.path,
                f"a route to {r.network} with metric {r.metric} already exists "
                "and was not set by networkd",
            )
        if e.code == errno.EINVAL and r.source is not None:
            return ConfigError(
                f"{r.path}.source", f"source {r.source} is not an address of this node"
            )
        return ConfigError(r.path, f"cannot add route to {r.network}: {_reason(e)}")

    async def _addresses(
        self, desired: Desired, links: dict[str, Any], result: ApplyResult
    ) -> None:
        want: dict[tuple[int, IPInterface], DesiredAddress] = {}
        for d in desired.addresses:
            link = links.get(d.link)
            if link is not None:
                want[(link["index"], d.address)] = d
        index_names = {msg["index"]: name for name, msg in links.items()}
        managed = {links[n]["index"] for n in desired.managed if n in links}
        have = set()
        stale = []
        for msg in await dump(self.ipr.get_addr):
            if msg.get("scope") != RT_SCOPE_UNIVERSE:
                continue
            addr = ipaddress.ip_interface(f"{msg.get('address')}/{msg.get('prefixlen')}")
            key = (msg["index"], addr)
            have.add(key)
            flags = msg.get("flags") or 0
            if key not in want and msg["index"] in managed and flags & IFA_F_PERMANENT:
                stale.append(key)
        # Add before removing: removing a link's last IPv4 address flushes all its IPv4 routes,
        # and with promote_secondaries a new address survives the removal of the old primary.
        retry = []
        for key, d in want.items():
            if key not in have and not await self._add_address(
                key[0], d, result, quiet_eexist=True
            ):
                retry.append((key[0], d))
        for index, addr in stale:
            name = index_names.get(index, str(index))
            if addr.version == 4:
                self._sysctl(f"net/ipv4/conf/{name}/promote_secondaries", "1")
            try:
                await self._change(
                    result,
                    f"remove address {addr} from {name}",
                    self.ipr.addr,
                    "del",
                    index=index,
                    address=str(addr.ip),
                    prefixlen=addr.network.prefixlen,
                )
            except NetlinkError as e:
                if e.code != errno.EADDRNOTAVAIL:
                    result.errors.append(
                        ConfigError("(stale address)", f"cannot remove {addr}: {_reason(e)}")
                    )
        for (
            index,
            d,
        ) in retry:  # the same IPv6 address with another prefix: added once the old one is gone
            await self._add_address(index, d, result, quiet_eexist=False)

    async def _add_address(
        self, index: int, d: DesiredAddress, result: ApplyResult, quiet_eexist: bool
    ) -> bool:
        addr = d.address
        kw: dict[str, Any] = {
            "index": index,
            "address": str(addr.ip),
            "prefixlen": addr.network.prefixlen,
        }
        if addr.version == 4 and addr.network.prefixlen < 31:
            kw["broadcast"] = str(addr.network.broadcast_address)
        try:
            await self._change(
                result, f"add address {addr} to {d.link}", self.ipr.addr, "add", **kw
            )
            return True
        except NetlinkError as e:
            if not (quiet_eexist and e.code == errno.EEXIST):
                result.errors.append(
                    ConfigError(d.path, f"cannot add {addr} to {d.link}: {_reason(e)}")
                )
            return False

    def _sysctl(self, key: str, value: str) -> None:
        if self.sysctl is None:
            return
        try:
            path = self.sysctl / key
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError as e:  # best effort: without it, routes are flushed and re-added
            log.warning("sysctl_failed", key=key, error=str(e))
