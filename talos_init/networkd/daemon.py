"""The networkd service: early network from the cmdline, then the machine config, kept applied.

Readiness ("network ready", sent once as READY=1): the loopback link is up and
at least one address networkd wants (static, ``ip=`` or a DHCP lease) is
present on an up link, and when any default route is wanted, at least one
of ours is installed. With nothing to configure (``ip=off``), ready right
after the loopback. Later changes are reported as ``STATUS=`` messages.

The config is `/run/talos/config.json` (effective config written by the
userdata service), seen through inotify on its directory; SIGHUP re-reads it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2.iproute.linux import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

from talos_init import cmdline as cmdline_mod
from talos_init import sdnotify
from talos_init.log import get_logger
from talos_init.networkd import files, model, stablename
from talos_init.networkd.apply import (
    RTPROT_DHCP,
    ApplyResult,
    Desired,
    DesiredAddress,
    DesiredLink,
    DesiredRoute,
    Reconciler,
    dump,
)
from talos_init.networkd.dhcp import DhcpRunner, LeaseInfo
from talos_init.networkd.links import Link, LinkTable
from talos_init.networkd.model import ConfigError, NetworkPlan, Route
from talos_init.networkd.watch import FileWatch

log = get_logger("networkd")

DHCP_RESTART_DELAY = 5.0  # seconds before a DHCP client that stopped by itself is restarted


@dataclass
class Options:
    root: Path = Path("/")
    cmdline: Path | None = None  # default <root>/proc/cmdline
    config: Path | None = None  # default <root>/run/talos/config.json
    state_dir: Path | None = None  # default <root>/run/talos/networkd (DHCP leases)
    link_timeout: float = 30.0  # how long to wait for configured links to appear
    set_hostname: bool = True  # sethostname(2); off only for tests without their own UTS namespace

    def __post_init__(self) -> None:
        self.cmdline = self.cmdline or self.root / "proc/cmdline"
        self.config = self.config or self.root / "run/talos/config.json"
        self.state_dir = self.state_dir or self.root / "run/talos/networkd"


@dataclass
class Resolved:
    desired: Desired = field(default_factory=Desired)
    errors: list[ConfigError] = field(default_factory=list)
    dhcp: set[str] = field(default_factory=set)  # links that should run DHCPv4
    dhcp_metric: dict[str, int] = field(default_factory=dict)  # dhcpOptions.routeMetric by link


def _selector_path(link: model.LinkPlan) -> str:
    """The field that selects the link, for 'no such link' errors."""
    if not link.path.startswith("machine"):
        return f"{link.path}.device"  # ip=
    return f"{link.path}.{'interface' if link.selector.name else 'deviceSelector'}"


def notify(message: str) -> bool:
    """sd_notify; False when the send failed (no $NOTIFY_SOCKET counts as sent: nobody listens)."""
    try:
        sdnotify.notify(message)
        return True
    except OSError as e:  # policy: log and go on; READY=1 is retried on the next reconcile
        log.warning("notify_failed", message=message, error=str(e))
        return False


class Networkd:
    def __init__(self, opts: Options):
        self.opts = opts
        self.links = LinkTable(self._link_changed)
        self.plan = NetworkPlan()
        self.generation = 0  # config loads, for STATUS=
        self.leases: dict[str, LeaseInfo] = {}
        self.dhcp: dict[str, DhcpRunner] = {}
        self.ready = False
        self._stopping = asyncio.Event()
        self._reconcile_wanted = False
        self._reconcile_task: asyncio.Task[None] | None = None
        self._config_task: asyncio.Task[None] | None = None
        self.last_result = ApplyResult()
        self._link_deadline = 0.0  # until then, a link the plan names may still appear
        self.early = NetworkPlan()
        self.watch: FileWatch | None = None
        self.generated_hostname: str | None = None  # derived once per run, see stablename
        self._no_identity_logged = False

    # -- the checklist -----------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_config)

        self.events = AsyncIPRoute()
        await self.events.bind(groups=RTMGRP_LINK)  # subscribe before the dump: no link is missed
        self.ipr = AsyncIPRoute()
        self.reconciler = Reconciler(self.ipr)
        # SIGTERM must not wait for the link timeout: the early stage runs as a task.
        start = asyncio.create_task(self.start(), name="start")
        stop = asyncio.create_task(self._stopping.wait(), name="wait for SIGTERM")
        await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
        if start.done() and start.exception() is not None:
            raise start.exception()  # type: ignore[misc]  # netlink unusable: let the supervisor restart us
        await stop
        start.cancel()
        await self.shutdown()
        return 0

    async def start(self) -> None:
        await self.bring_up_loopback()
        await self.links.start(self.events, self.ipr)
        self.early = self.read_cmdline()
        self.plan = self.early
        await self.bring_up_candidates()
        await self.wait_links(self.plan, "cmdline")
        self.request_reconcile()
        assert self.opts.config is not None
        self.watch = FileWatch(self.opts.config, self.reload_config)
        if self.opts.config.exists():
            self.reload_config()

    async def bring_up_loopback(self) -> None:
        index = (await self.ipr.link_lookup(ifname="lo"))[0]
        await self.ipr.link("set", index=index, state="up")
        log.info("loopback_up")

    def read_cmdline(self) -> NetworkPlan:
        assert self.opts.cmdline is not None
        try:
            cmd = cmdline_mod.read(self.opts.cmdline)
        except OSError as e:  # no /proc/cmdline: behave as with an empty one
            log.error("cmdline_unreadable", path=str(self.opts.cmdline), error=str(e))
            cmd = cmdline_mod.parse("")
        for err in cmd.errors:
            if err.param in ("ip", "talos.hostname"):
                log.error("cmdline_error", param=err.param, value=err.value, error=err.reason)
        plan = model.from_cmdline(cmd)
        self._log_config_errors(plan.errors)
        log.info(
            "early_plan",
            dhcp_on_carrier=plan.dhcp_on_carrier,
            hostname=plan.hostname,
            links=[str(link.selector) for link in plan.links],
        )
        return plan

    async def bring_up_candidates(self) -> None:
        """Set physical links up: carrier is only reported on an up link."""
        for link in list(self.links.by_index.values()):
            if link.candidate and not link.up:
                await self.ipr.link("set", index=link.index, state="up")

    def _needed_selectors(self, plan: NetworkPlan) -> list[tuple[model.Selector, str]]:
        """Links that must exist (not be created by us) for `plan`, with the config path naming each."""
        out = []
        for link in plan.links:
            if link.kind == "existing":
                out.append((link.selector, _selector_path(link)))
            if link.bond:
                out += [(s, f"{link.path}.bond.interfaces") for s in link.bond.slaves]
        return out

    async def wait_links(self, plan: NetworkPlan, stage: str) -> None:
        """Wait (on link events) for the links the plan names, or for carrier when it runs DHCP anywhere."""
        needed = self._needed_selectors(plan)

        def have_all() -> bool:
            return all(self.links.find(sel) for sel, _ in needed)

        def have_carrier() -> bool:
            return any(link.candidate and link.carrier for link in self.links.by_index.values())

        if needed and not await self.links.wait_for(have_all, self.opts.link_timeout):
            missing = [f"{path}={sel}" for sel, path in needed if not self.links.find(sel)]
            log.error(
                "link_wait_timeout",
                stage=stage,
                timeout=self.opts.link_timeout,
                missing=missing,
                links=self.links.describe(),
            )
        if (
            plan.dhcp_on_carrier
            and not plan.links
            and not await self.links.wait_for(have_carrier, self.opts.link_timeout)
        ):
            log.error(
                "link_wait_timeout",
                stage=stage,
                timeout=self.opts.link_timeout,
                missing=["a link with carrier for DHCP"],
                links=self.links.describe(),
            )

    # -- config --------------------------------------------------------------

    def reload_config(self) -> None:
        if self.watch is None:
            return  # still starting: the config is read once the watch is in place
        if self._config_task and not self._config_task.done():
            self._config_task.cancel()
        self._config_task = asyncio.create_task(self._load_config(), name="load config")

    async def _load_config(self) -> None:
        assert self.opts.config is not None
        try:
            config = json.loads(self.opts.config.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.error("config_unreadable", path=str(self.opts.config), error=str(e))
            return
        self.generation += 1
        plan = model.merge(self.early, model.from_config(config))
        log.info(
            "config_loaded",
            generation=self.generation,
            path=str(self.opts.config),
            links=[str(link.selector) for link in plan.links],
        )
        self._log_config_errors([e for e in plan.errors if e not in self.early.errors])
        # Apply what is there now; a missing link is an error only once the wait is over.
        self.plan = plan
        self._link_deadline = asyncio.get_running_loop().time() + self.opts.link_timeout
        self.request_reconcile()
        await self.wait_links(plan, "config")
        self._link_deadline = 0.0
        self.request_reconcile()

    def _log_config_errors(self, errors: list[ConfigError]) -> None:
        for err in errors:
            if err.severity == "unsupported":
                log.warning("config_unsupported", field=err.path, reason=err.message)
            else:
                log.error("config_error", field=err.path, error=err.message)

    # -- events ----------------------------------------------------------------

    def _link_changed(self, old: Link | None, new: Link | None) -> None:
        if old is None and new is not None:
            log.info("link_added", link=new.name, mac=new.mac, kind=new.kind)
        elif new is None and old is not None:
            log.info("link_removed", link=old.name)
        elif old is not None and new is not None:
            if old.carrier != new.carrier:
                log.info("link_carrier", link=new.name, carrier=new.carrier)
            elif (old.name, old.master, old.up) == (new.name, new.master, new.up):
                return  # MTU, stats...: nothing we act on
        if hasattr(self, "reconciler"):
            self.request_reconcile()

    def _dhcp_died(self, link: str) -> None:
        """A DHCP client stopped by itself: start a new one after a pause (no tight loop)."""
        log.warning("dhcp_restart_scheduled", link=link, delay=DHCP_RESTART_DELAY)
        asyncio.get_running_loop().call_later(DHCP_RESTART_DELAY, self.request_reconcile)

    def _lease_event(self, event: str, link: str, lease: LeaseInfo) -> None:
        if event in ("bound", "renewed", "rebound"):
            if lease.hostname and not cmdline_mod.HOSTNAME_RE.fullmatch(lease.hostname):
                # It would outrank the generated name and leave the node an unusable one.
                log.warning("dhcp_hostname_ignored", link=link, hostname=lease.hostname)
                lease = dataclasses.replace(lease, hostname=None)
            self.leases[link] = lease
        else:
            self.leases.pop(link, None)
        self.request_reconcile()

    # -- reconcile -------------------------------------------------------------

    def request_reconcile(self) -> None:
        """Coalesce: one reconcile at a time, and one more if asked while it runs."""
        self._reconcile_wanted = True
        if self._reconcile_task is None or self._reconcile_task.done():
            self._reconcile_task = asyncio.create_task(self._reconcile_loop(), name="reconcile")

    async def _reconcile_loop(self) -> None:
        while self._reconcile_wanted and not self._stopping.is_set():
            self._reconcile_wanted = False
            try:
                await self.reconcile()
            except Exception:  # keep the service up; the next event retries
                log.exception("reconcile_failed")

    def resolve(self, plan: NetworkPlan) -> Resolved:
        """Turn selectors into link names and add what the DHCP leases give."""
        r = Resolved()
        d = r.desired
        selected: set[str] = set()
        # The config wins per link even when it selects by MAC what ip= named (merge() compares selectors).
        by_config = {
            link.name
            for lp in plan.links
            if lp.path.startswith("machine") and (link := self.links.find(lp.selector)) is not None
        }
        for lp in plan.links:
            if lp.kind == "existing":
                link = self.links.find(lp.selector)
                if (
                    link is not None
                    and link.name in by_config
                    and not lp.path.startswith("machine")
                ):
                    continue
                if link is None:
                    if asyncio.get_running_loop().time() < self._link_deadline:
                        continue  # still within the wait for links; reported when it ends
                    r.errors.append(
                        ConfigError(
                            _selector_path(lp),
                            f"no link matches {lp.selector} (links: {self.links.describe()})",
                        )
                    )
                    continue
                name = link.name
            else:
                name = lp.selector.name or ""
            selected.add(name)
            if lp.ignore:
                continue
            dl = DesiredLink(
                name=name, path=lp.path, kind=lp.kind, vlan_id=lp.vlan_id, bond=lp.bond, mtu=lp.mtu
            )
            if lp.parent is not None:
                parent = self.links.find(lp.parent)
                dl.parent = parent.name if parent else lp.parent.name
            if lp.bond is not None:
                for slave in lp.bond.slaves:
                    s = self.links.find(slave)
                    if s is None:
                        r.errors.append(
                            ConfigError(
                                f"{lp.path}.bond.interfaces",
                                f"no link matches {slave} (links: {self.links.describe()})",
                            )
                        )
                    else:
                        dl.slaves.append(s.name)
                        selected.add(s.name)
                        d.managed.add(s.name)  # a bond slave carries no address of its own
            d.links.append(dl)
            d.managed.add(name)
            d.addresses += [DesiredAddress(name, a, p) for a, p in lp.addresses]
            d.routes += [DesiredRoute(name, rt) for rt in lp.routes]
            if lp.dhcp:
                r.dhcp.add(name)
                if lp.dhcp_metric is not None:
                    r.dhcp_metric[name] = lp.dhcp_metric
        if plan.dhcp_on_carrier:
            for link in self.links.by_index.values():
                if link.candidate and link.name not in selected:
                    r.dhcp.add(link.name)
                    d.managed.add(link.name)
                    if not any(x.name == link.name for x in d.links):
                        d.links.append(DesiredLink(name=link.name, path="(dhcp on carrier)"))
        for name in r.dhcp:
            lease = self.leases.get(name)
            if lease is None:
                continue
            metric = r.dhcp_metric.get(name, model.DEFAULT_DHCP_METRIC)
            dl = next(x for x in d.links if x.name == name)
            if (
                dl.mtu is None and lease.mtu and lease.mtu >= 576
            ):  # RFC 2132: 68, but below 576 is a bad server
                dl.mtu = lease.mtu
            d.addresses.append(DesiredAddress(name, lease.address, f"(dhcp lease on {name})"))
            if lease.routes:  # RFC 3442: with classless routes, the router option is ignored
                d.routes += [
                    DesiredRoute(
                        name,
                        Route(
                            net,
                            gw,
                            metric,
                            None,
                            f"(dhcp lease on {name}).classless_static_route",
                        ),
                        RTPROT_DHCP,
                    )
                    for net, gw in lease.routes
                ]
            elif lease.routers:
                d.routes.append(
                    DesiredRoute(
                        name,
                        Route(
                            ipaddress.ip_network("0.0.0.0/0"),
                            lease.routers[0],
                            metric,
                            None,
                            f"(dhcp lease on {name}).router",
                        ),
                        RTPROT_DHCP,
                    )
                )
        return r

    async def reconcile(self) -> ApplyResult:
        generation, plan = self.generation, self.plan  # a config load may replace them meanwhile
        resolved = self.resolve(plan)
        await self._sync_dhcp(resolved.dhcp)
        result = await self.reconciler.apply(resolved.desired)
        result.errors[:0] = resolved.errors
        for err in result.errors:
            if err not in self.last_result.errors:  # say each problem once, not on every event
                log.error("apply_error", field=err.path, error=err.message)
        self._write_files(plan, resolved)
        self.last_result = result
        self._write_status(generation, plan, result)
        settled = asyncio.get_running_loop().time() >= self._link_deadline  # not waiting for links
        log.info(
            "applied",
            generation=generation,
            changes=len(result.changes),
            errors=len(result.errors),
            settled=settled,
        )
        notify(
            f"STATUS=applied generation={generation} changes={len(result.changes)} "
            f"errors={len(result.errors)}"
        )
        if not self.ready and await self._network_ready(resolved.desired):
            self.ready = notify("READY=1\nSTATUS=network ready")
            log.info("network_ready", notified=self.ready)
            self._write_status(generation, plan, result)  # "ready": true, for userdata's fetch
        return result

    async def _sync_dhcp(self, wanted: set[str]) -> None:
        for name in list(self.dhcp):
            link = self.links.by_name(name)
            if name not in wanted or link is None:
                await self.dhcp.pop(name).stop(release=link is not None)
                self.leases.pop(name, None)
            elif not link.carrier and self.dhcp[name].running:
                log.info("dhcp_pause", link=name, reason="carrier lost")
                await self.dhcp[name].stop(release=False)  # keep the lease for INIT-REBOOT
        for name in wanted:
            link = self.links.by_name(name)
            if link is None or not link.carrier:
                continue
            runner = self.dhcp.get(name)
            if runner is None:
                assert self.opts.state_dir is not None
                runner = self.dhcp[name] = DhcpRunner(
                    name,
                    self.opts.state_dir / "leases",
                    self.hostname(generate=False),  # a fallback, not a name to register in DNS
                    self._lease_event,
                )
                runner.on_died = self._dhcp_died
            if not runner.running:
                runner.start()

    def _write_status(self, generation: int, plan: NetworkPlan, result: ApplyResult) -> None:
        """status.json in the state dir: what networkd sees and did last, for the API and operators."""
        assert self.opts.state_dir is not None
        status = {
            "generation": generation,
            "ready": self.ready,
            "links": [
                {
                    "name": lk.name,
                    "mac": lk.mac,
                    "kind": lk.kind,
                    "up": lk.up,
                    "carrier": lk.carrier,
                    "mtu": lk.mtu,
                    "driver": lk.driver,
                    "bus_path": lk.bus_path,
                }
                for lk in sorted(self.links.by_index.values(), key=lambda lk: lk.index)
            ],
            "leases": [
                {
                    "link": le.link,
                    "address": str(le.address),
                    "server": le.server,
                    "routers": [str(r) for r in le.routers],
                    "dns": [str(d) for d in le.nameservers],
                    "lease_time": le.lease_time,
                }
                for le in self.leases.values()
            ],
            "errors": [
                {"field": e.path, "error": e.message, "severity": e.severity}
                for e in plan.errors + result.errors
            ],
            "last_changes": result.changes,
        }
        try:
            files.write_atomic(
                self.opts.state_dir / "status.json", json.dumps(status, indent=1) + "\n"
            )
        except OSError as e:  # policy: status is informational; the network matters more
            log.warning("status_write_failed", error=str(e))

    def hostname(self, plan: NetworkPlan | None = None, generate: bool = True) -> str | None:
        """The config's (or cmdline's) hostname, else the first one a DHCP server gave,
        else (when `generate`) the machine's generated stable one."""
        plan = plan or self.plan
        if plan.hostname:
            return plan.hostname
        leased = next((lease.hostname for lease in self.leases.values() if lease.hostname), None)
        if leased or not generate:
            return leased
        return self._stable_hostname()

    def _stable_hostname(self) -> str | None:
        """Derived once: a NIC that appears later must not rename the node while it runs."""
        if self.generated_hostname is None:
            ident = stablename.identity(self.opts.root / "sys", self.links.by_index.values())
            if ident is None:
                if not self._no_identity_logged:  # retried on every reconcile: a NIC may appear
                    self._no_identity_logged = True
                    log.warning(
                        "hostname_not_generated",
                        reason="no usable SMBIOS product UUID and no physical NIC with a MAC",
                        links=self.links.describe(),
                    )
                return None
            self.generated_hostname = stablename.derive(ident)
            log.info(
                "hostname_generated",
                hostname=self.generated_hostname,
                source=ident.source,
                value=ident.value,
                link=ident.link,
            )
        return self.generated_hostname

    def _write_files(self, plan: NetworkPlan, resolved: Resolved) -> None:
        root = self.opts.root
        leases = [self.leases[n] for n in sorted(self.leases) if n in resolved.dhcp]
        nameservers = list(plan.nameservers) or [ns for lease in leases for ns in lease.nameservers]
        search = list(plan.search_domains) or [s for lease in leases for s in lease.search]
        if files.write_atomic(
            root / "etc/resolv.conf", files.render_resolv_conf(nameservers, search)
        ):
            log.info(
                "resolv_conf_written", nameservers=[str(n) for n in nameservers], search=search
            )
        hostname = self.hostname(plan)
        if hostname and not files.one_token(hostname):
            log.error("hostname_refused", hostname=repr(hostname), reason="not one token")
            hostname = None
        address = next(
            (a.address.ip for a in resolved.desired.addresses if a.address.version == 4), None
        )
        if files.write_atomic(
            root / "etc/hosts", files.render_hosts(hostname, address, plan.extra_hosts)
        ):
            log.info("hosts_written", hostname=hostname, address=str(address) if address else None)
        if hostname:
            if files.write_atomic(root / "etc/hostname", hostname + "\n"):
                log.info("hostname_file_written", hostname=hostname)
            if self.opts.set_hostname:
                try:
                    if files.set_kernel_hostname(hostname):
                        log.info("hostname_set", hostname=hostname)
                except OSError as e:
                    log.error("hostname_failed", hostname=hostname, error=str(e))

    async def _network_ready(self, desired: Desired) -> bool:
        if not desired.addresses and not self.plan.links and not self.plan.dhcp_on_carrier:
            return True  # ip=off: nothing to wait for
        up = {link.index for link in self.links.by_index.values() if link.up}
        names = {link.name: link.index for link in self.links.by_index.values()}
        want = {(names.get(a.link), a.address) for a in desired.addresses}
        have_address = False
        for msg in await dump(self.ipr.get_addr):
            key = (
                msg["index"],
                ipaddress.ip_interface(f"{msg.get('address')}/{msg.get('prefixlen')}"),
            )
            if key in want and msg["index"] in up:
                have_address = True
        if not have_address:
            return False
        if not any(r.route.network.prefixlen == 0 for r in desired.routes):
            return True
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in await dump(self.ipr.get_routes, family=family, table=254):
                if (msg.get("dst_len") or 0) == 0 and msg.get("proto") in (4, 16):
                    return True
        return False

    async def shutdown(self) -> None:
        log.info("stopping", dhcp_links=sorted(self.dhcp))
        if self._config_task:
            self._config_task.cancel()
        dhcp_links = set(self.dhcp)
        for name in list(self.dhcp):
            await self.dhcp.pop(name).stop(release=True)
        self.leases.clear()
        if self._reconcile_task:
            await asyncio.gather(self._reconcile_task, return_exceptions=True)
        # The released leases' addresses and routes must not stay in use.
        resolved = self.resolve(NetworkPlan(links=self.plan.links))
        resolved.desired.managed |= dhcp_links
        await self.reconciler.apply(resolved.desired)
        self.links.stop()
        if self.watch is not None:
            self.watch.close()
        self.events.close()
        self.ipr.close()
        log.info("stopped")
