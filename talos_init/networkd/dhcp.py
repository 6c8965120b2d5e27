"""DHCPv4 on one link, with pyroute2's client (`pyroute2.dhcp.client.AsyncDHCPClient`).

Why pyroute2's client: it implements the RFC 2131 state machine we need
(INIT, SELECTING, REQUESTING, BOUND, RENEWING at T1 by unicast, REBINDING at
T2 by broadcast, INIT-REBOOT from a saved lease, RELEASE on exit) on a raw
socket with a BPF filter, so it works before the link has an address.
What it lacks we add here:
- it does not notice carrier loss (its send/receive tasks just end on
  ENETDOWN): the daemon follows carrier through netlink events and stops /
  restarts this runner; a restart from the saved lease is an INIT-REBOOT;
- its lease file goes to the working directory, written in place: ours goes
  to a given directory, written atomically;
- its hooks configure the kernel themselves: ours only report the lease, and
  the daemon's reconciler applies it with the rest of the config.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pyroute2.dhcp import fsm
from pyroute2.dhcp.client import AsyncDHCPClient, ClientConfig
from pyroute2.dhcp.enums import dhcp
from pyroute2.dhcp.hooks import Trigger, hook
from pyroute2.dhcp.leases import JSONFileLease, Lease

from talos_init.cmdline import HOSTNAME_RE
from talos_init.log import get_logger
from talos_init.networkd.files import write_atomic

log = get_logger("networkd")
logging.getLogger("pyroute2.dhcp").setLevel(logging.WARNING)  # our own lease events say it once

REQUESTED = (
    dhcp.Option.SUBNET_MASK,
    dhcp.Option.ROUTER,
    dhcp.Option.NAME_SERVER,
    dhcp.Option.DOMAIN_NAME,
    dhcp.Option.HOST_NAME,
    dhcp.Option.DOMAIN_SEARCH,
    dhcp.Option.BROADCAST_ADDRESS,
    dhcp.Option.INTERFACE_MTU,
    dhcp.Option.CLASSLESS_STATIC_ROUTE,
    dhcp.Option.LEASE_TIME,
    dhcp.Option.RENEWAL_TIME,
    dhcp.Option.REBINDING_TIME,
)


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease gives the node, in plain types."""

    link: str
    address: ipaddress.IPv4Interface
    routers: tuple[ipaddress.IPv4Address, ...]
    nameservers: tuple[ipaddress.IPv4Address, ...]
    search: tuple[str, ...]
    hostname: str | None
    server: str | None
    mtu: int | None
    # RFC 3442 classless static routes: (destination, gateway or None for on-link).
    routes: tuple[tuple[ipaddress.IPv4Network, ipaddress.IPv4Address | None], ...]
    lease_time: int | None
    renewal_time: int | None
    rebinding_time: int | None


def classless_routes(
    data: list[int],
) -> tuple[tuple[ipaddress.IPv4Network, ipaddress.IPv4Address | None], ...]:
    """Decode option 121 (pyroute2 hands it over as raw octets): width, significant octets, router.

    A malformed option yields the routes decoded before the fault (RFC 3442 asks to ignore
    a bad option; the router option then applies only if nothing could be decoded).
    """
    out = []
    i = 0
    while i < len(data):
        width = data[i]
        size = (width + 7) // 8
        if width > 32 or i + 1 + size + 4 > len(data):
            log.warning("dhcp_bad_classless_routes", at_octet=i)
            break
        dest = bytes(data[i + 1 : i + 1 + size]) + bytes(4 - size)
        router = ipaddress.IPv4Address(bytes(data[i + 1 + size : i + 5 + size]))
        try:
            network = ipaddress.IPv4Network((dest, width))
        except ValueError:  # host bits set beyond the width
            log.warning("dhcp_bad_classless_routes", at_octet=i)
            break
        out.append((network, None if router == ipaddress.IPv4Address(0) else router))
        i += 1 + size + 4
    return tuple(out)


def dns_name(value: object) -> str | None:
    """``value`` when it is a DNS name (letters, digits, '-', dots; labels of 1-63, 253 in all)."""
    if not isinstance(value, str):
        return None
    name = value[:-1] if value.endswith(".") else value  # a fully qualified name's root dot
    return name if HOSTNAME_RE.fullmatch(name) else None


def domain_list(data: bytes) -> list[str]:
    """Option 119 (RFC 3397): names in DNS wire form, compression pointers into the option.

    pyroute2 hands the option over as raw octets. Labels are decoded as latin-1
    so any byte survives to be judged (and refused) by ``dns_name``. A malformed
    option raises ValueError: the whole option is ignored, as RFC 3397 asks."""
    names: list[str] = []
    i = 0
    while i < len(data):
        labels: list[str] = []
        pos, resume, hops = i, None, 0
        while True:
            if pos >= len(data):
                raise ValueError(f"name at octet {i} runs past the option")
            size = data[pos]
            if size == 0:
                pos += 1
                break
            if size & 0xC0 == 0xC0:  # a pointer to an earlier name's tail
                if pos + 1 >= len(data) or hops >= 128:
                    raise ValueError(f"bad compression pointer at octet {pos}")
                resume = pos + 2 if resume is None else resume
                pos, hops = ((size & 0x3F) << 8) | data[pos + 1], hops + 1
                continue
            if size & 0xC0 or pos + 1 + size > len(data):
                raise ValueError(f"bad label at octet {pos}")
            labels.append(data[pos + 1:pos + 1 + size].decode("latin-1"))
            if sum(len(x) + 1 for x in labels) > 255:
                raise ValueError(f"name at octet {i} longer than 255 octets")
            pos += 1 + size
        names.append(".".join(labels))
        i = resume if resume is not None else pos
    return names


def _search_option(link: str, value: object) -> list[object]:
    if isinstance(value, (bytes, list)) and all(isinstance(b, int) for b in value):
        try:
            return list(domain_list(bytes(value)))
        except ValueError as e:
            log.warning("dhcp_option_ignored", link=link, option="domain_search", reason=str(e))
            return []
    return list(value) if isinstance(value, list) else [value]  # already decoded


def _names(link: str, option: str, values: list[object]) -> list[str]:
    """Policy: the server is not trusted with text; a name that is not a DNS name is dropped
    and logged, the good ones kept."""
    good = []
    for value in values:
        name = dns_name(value)
        if name is None:
            log.warning("dhcp_option_ignored", link=link, option=option, value=repr(value)[:200],
                        reason="not a DNS name")
        else:
            good.append(name)
    return good


def lease_info(lease: Lease) -> LeaseInfo:
    opts = lease.ack["options"]
    mask = opts.get("subnet_mask") or "255.255.255.0"
    link = lease.interface
    search = _names(link, "domain_search", _search_option(link, opts.get("domain_search") or []))
    for domain in _names(link, "domain_name", [opts["domain_name"]] if opts.get("domain_name") else []):
        if domain not in search:
            search.insert(0, domain)
    hostname = _names(link, "host_name", [opts["host_name"]] if opts.get("host_name") else [])
    return LeaseInfo(
        link=lease.interface,
        address=ipaddress.IPv4Interface(f"{lease.ip}/{mask}"),
        routers=tuple(ipaddress.IPv4Address(r) for r in opts.get("router") or ()),
        nameservers=tuple(ipaddress.IPv4Address(n) for n in opts.get("name_server") or ()),
        search=tuple(search),
        hostname=hostname[0] if hostname else None,
        server=opts.get("server_id"),
        mtu=opts.get("interface_mtu") or None,
        routes=classless_routes(opts.get("classless_static_route") or []),
        lease_time=opts.get("lease_time"),
        renewal_time=opts.get("renewal_time"),
        rebinding_time=opts.get("rebinding_time"),
    )


def lease_class(directory: Path) -> type[Lease]:
    """A lease type stored as <directory>/<link>.lease.json, for INIT-REBOOT after a restart or flap."""

    class FileLease(JSONFileLease):
        @classmethod
        def _get_lease_dir(cls) -> Path:
            return directory

        def dump(self) -> None:
            write_atomic(self._get_path(self.interface), json.dumps(asdict(self), indent=2), 0o600)

    return FileLease


LeaseCallback = Callable[[str, str, LeaseInfo], None]  # (event, link, lease)


class _Client(AsyncDHCPClient):
    """pyroute2's client, made to survive a bad packet.

    Upstream, one reply it cannot handle (a BOOTREPLY without a message type
    raises KeyError) ends its receive task for good: the lease is then never
    renewed. Any host on the LAN could send one. Here it is logged and dropped.
    """

    async def _process_msg(self, msg: Any) -> None:
        try:
            await super()._process_msg(msg)
        except Exception as e:  # policy: one bad packet is dropped, never fatal
            log.warning(
                "dhcp_packet_ignored",
                link=self.config.interface,
                sender=msg.eth_src,
                error=f"{type(e).__name__}: {e}",
            )


class DhcpRunner:
    """Keeps a DHCPv4 lease on one link until stopped."""

    def __init__(self, link: str, lease_dir: Path, hostname: str | None, on_event: LeaseCallback):
        self.link = link
        self.lease_dir = lease_dir
        self.hostname = hostname
        self.on_event = on_event
        self._stop = asyncio.Event()
        self._release = True
        self._task: asyncio.Task[None] | None = None
        self.client: AsyncDHCPClient | None = None
        self.died = False  # the client stopped on its own; the daemon restarts it
        self.on_died: Callable[[str], None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._stop = asyncio.Event()
        self.died = False
        self._release = True
        self._task = asyncio.create_task(self._run(), name=f"dhcp {self.link}")

    async def stop(self, release: bool) -> None:
        """Stop the client; with `release`, send DHCPRELEASE and report the lease as gone."""
        if self._task is None:
            return
        self._release = release
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        except TimeoutError:
            self._task.cancel()
        except Exception:
            pass  # already logged by _run
        self._task = None
        if release:
            (self.lease_dir / f"{self.link}.lease.json").unlink(missing_ok=True)

    def _hooks(self) -> list[Any]:
        names = {
            Trigger.BOUND: "bound",
            Trigger.RENEWED: "renewed",
            Trigger.REBOUND: "rebound",
            Trigger.UNBOUND: "unbound",
            Trigger.EXPIRED: "expired",
        }
        hooks = []
        for trigger, event in names.items():

            async def report(lease: Lease, event: str = event) -> None:
                info = lease_info(lease)
                log.info(
                    f"dhcp_{event}",
                    link=self.link,
                    address=str(info.address),
                    routers=[str(r) for r in info.routers],
                    dns=[str(n) for n in info.nameservers],
                    server=info.server,
                    lease_time=info.lease_time,
                    t1=info.renewal_time,
                    t2=info.rebinding_time,
                )
                self.on_event(event, self.link, info)

            report.__name__ = f"report_{event}"
            hooks.append(hook(trigger)(report))
        return hooks

    async def _run(self) -> None:
        self.lease_dir.mkdir(parents=True, exist_ok=True)
        cfg = ClientConfig(
            interface=self.link,
            lease_type=lease_class(self.lease_dir),
            hooks=self._hooks(),
            requested_parameters=REQUESTED,
            handle_signals=False,  # signals belong to the daemon
            host_name=self.hostname,
            vendor_id="talos-init",
        )
        try:
            async with _Client(cfg) as client:
                self.client = client
                log.info(
                    "dhcp_start",
                    link=self.link,
                    state="init-reboot" if client.state == fsm.State.INIT_REBOOT else "init",
                )
                await client.bootstrap()
                # The client's own send and receive tasks end only when it stops; if one ends
                # before that (ENETDOWN, a bug), stop and let the daemon start a fresh client.
                stop = asyncio.ensure_future(self._stop.wait())
                inner = {t for t in (client._receiver_task, client._sender_task) if t is not None}
                done, _ = await asyncio.wait({stop, *inner}, return_when=asyncio.FIRST_COMPLETED)
                if stop not in done:
                    stop.cancel()
                    ended = next(iter(done))
                    error = None if ended.cancelled() else ended.exception()
                    log.error(
                        "dhcp_client_died", link=self.link, task=ended.get_name(), error=repr(error)
                    )
                    self._release = False  # keep the lease: the next client re-requests it
                    self.died = True
                cfg.release = self._release
        except Exception as e:  # the daemon restarts us on the next carrier event or config
            log.error("dhcp_failed", link=self.link, error=f"{type(e).__name__}: {e}")
        finally:
            self.client = None
            log.info("dhcp_stop", link=self.link, released=self._release)
            if not self._stop.is_set():  # not asked to stop: tell the daemon
                self.died = True
                if self.on_died is not None:
                    self.on_died(self.link)
