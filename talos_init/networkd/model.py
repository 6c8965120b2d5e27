"""What the network should look like, parsed from the cmdline and the machine config.

No I/O here: the functions take the parsed kernel command line or the effective
config (Talos v1alpha1 shape, as written by `userdata` to /run/talos/config.json)
and return a `NetworkPlan`. Every field that cannot be used becomes a
`ConfigError` naming its path (``machine.network.interfaces[1].routes[0].gateway``);
the rest of the plan is kept, so one bad value never costs the whole network.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from talos_init.cmdline import HOSTNAME_RE, KernelCmdline

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", re.I)
MAC_PATTERN_RE = re.compile(r"^[0-9a-f:*?\[\]-]{1,17}$", re.I)  # a MAC or a shell pattern of one
IFNAME_RE = re.compile(r"^[^\s/:]{1,15}$")  # IFNAMSIZ - 1, no slash, colon or space
BOND_MODES = {
    "balance-rr": 0,
    "active-backup": 1,
    "balance-xor": 2,
    "broadcast": 3,
    "802.3ad": 4,
    "balance-tlb": 5,
    "balance-alb": 6,
}
# Talos bond field -> (pyroute2 attribute, maximum) for integers, (attribute, names) for enums.
BOND_INTS = {
    "miimon": ("bond_miimon", 2**32 - 1),
    "updelay": ("bond_updelay", 2**32 - 1),
    "downdelay": ("bond_downdelay", 2**32 - 1),
    "arpInterval": ("bond_arp_interval", 2**32 - 1),
    "resendIgmp": ("bond_resend_igmp", 255),
    "minLinks": ("bond_min_links", 2**32 - 1),
    "lpInterval": ("bond_lp_interval", 2**32 - 1),
    "packetsPerSlave": ("bond_packets_per_slave", 65535),
    "numPeerNotif": ("bond_num_peer_notif", 255),
    "tlbDynamicLb": ("bond_tlb_dynamic_lb", 1),
    "allSlavesActive": ("bond_all_slaves_active", 1),
    "adActorSysPrio": ("bond_ad_actor_sys_prio", 65535),
    "adUserPortKey": ("bond_ad_user_port_key", 1023),
}
BOND_ENUMS = {
    "xmitHashPolicy": (
        "bond_xmit_hash_policy",
        {"layer2": 0, "layer3+4": 1, "layer2+3": 2, "encap2+3": 3, "encap3+4": 4, "vlan+srcmac": 5},
    ),
    "lacpRate": ("bond_ad_lacp_rate", {"slow": 0, "fast": 1}),
    "arpValidate": (
        "bond_arp_validate",
        {
            "none": 0,
            "active": 1,
            "backup": 2,
            "all": 3,
            "filter": 4,
            "filter_active": 5,
            "filter_backup": 6,
        },
    ),
    "arpAllTargets": ("bond_arp_all_targets", {"any": 0, "all": 1}),
    "primaryReselect": ("bond_primary_reselect", {"always": 0, "better": 1, "failure": 2}),
    "failOverMac": ("bond_fail_over_mac", {"none": 0, "active": 1, "follow": 2}),
    "adSelect": ("bond_ad_select", {"stable": 0, "bandwidth": 1, "count": 2}),
}
BOND_UNSUPPORTED = ("primary", "adActorSystem", "arpIPTarget", "peerNotifyDelay")
DEFAULT_DHCP_METRIC = 1024  # Talos' default route metric for DHCP routes
DEFAULT_STATIC_METRIC = 1024

# Fields of machine.network.interfaces[] we read but do not act on: reported, not fatal.
UNSUPPORTED_INTERFACE_FIELDS = ("bridge", "wireguard", "vip", "dummy", "bridgePort")
KNOWN_INTERFACE_FIELDS = {
    "interface",
    "deviceSelector",
    "addresses",
    "cidr",
    "routes",
    "mtu",
    "dhcp",
    "ignore",
    "vlans",
    "dhcpOptions",
    "bond",
    *UNSUPPORTED_INTERFACE_FIELDS,
}


@dataclass(frozen=True)
class ConfigError:
    path: str
    message: str
    severity: str = "error"  # "error": not applied; "unsupported": accepted and ignored

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Route:
    network: IPNetwork
    gateway: IPAddress | None
    metric: int
    source: IPAddress | None
    path: str  # where it came from, for errors
    mtu: int | None = None  # path MTU for this route (RTAX_MTU)

    @property
    def family(self) -> int:
        return self.network.version


@dataclass(frozen=True)
class Selector:
    """How a configured interface finds its link: by name, or a Talos deviceSelector.

    deviceSelector fields are shell-style patterns (``52:54:00:*``, ``virtio*``)
    that must all match; ``physical`` is a link with a bus (ethtool bus info).
    """

    name: str | None = None
    hardware_addr: str | None = None  # patterns, MACs in lower case
    permanent_addr: str | None = None
    driver: str | None = None
    bus_path: str | None = None
    physical: bool | None = None

    def __str__(self) -> str:
        if self.name:
            return self.name
        parts = [
            f"{k}={v}"
            for k, v in (
                ("hardwareAddr", self.hardware_addr),
                ("permanentAddr", self.permanent_addr),
                ("driver", self.driver),
                ("busPath", self.bus_path),
                ("physical", self.physical),
            )
            if v is not None
        ]
        return "deviceSelector " + ",".join(parts)


@dataclass
class Bond:
    mode: int = 0
    slaves: list[Selector] = field(default_factory=list)
    options: dict[str, int] = field(default_factory=dict)  # pyroute2 attribute -> value


@dataclass
class LinkPlan:
    """One link to configure: an existing one, or a VLAN or bond to create."""

    selector: Selector
    path: str
    kind: str = "existing"  # existing | vlan | bond
    parent: Selector | None = None  # VLAN's parent link
    vlan_id: int | None = None
    bond: Bond | None = None
    dhcp: bool = False
    dhcp_metric: int | None = None  # dhcpOptions.routeMetric; None: 1024 + link index
    addresses: list[tuple[IPInterface, str]] = field(default_factory=list)  # (address, path)
    routes: list[Route] = field(default_factory=list)
    mtu: int | None = None
    ignore: bool = False


@dataclass
class HostEntry:
    ip: IPAddress
    aliases: list[str]


@dataclass
class NetworkPlan:
    hostname: str | None = None
    nameservers: list[IPAddress] = field(default_factory=list)
    search_domains: list[str] = field(default_factory=list)
    extra_hosts: list[HostEntry] = field(default_factory=list)
    links: list[LinkPlan] = field(default_factory=list)
    dhcp_on_carrier: bool = False  # no explicit config: DHCPv4 on every link with carrier
    errors: list[ConfigError] = field(default_factory=list)


def from_cmdline(cmd: KernelCmdline) -> NetworkPlan:
    """The early plan: `ip=` if given, otherwise DHCPv4 on every link with carrier."""
    plan = NetworkPlan(hostname=cmd.hostname)
    if not cmd.ip:
        plan.dhcp_on_carrier = True
        return plan
    for i, ip in enumerate(cmd.ip):
        path = f"cmdline ip[{i}]"
        if ip.autoconf in ("dhcp6", "auto6"):
            plan.errors.append(
                ConfigError(
                    path, f"autoconf {ip.autoconf} is not supported (DHCPv4 only)", "unsupported"
                )
            )
            continue
        if ip.autoconf in (
            "off",
            "none",
        ):  # ip=off: the network is not configured before the config
            continue
        if ip.autoconf in ("dhcp", "both") and ip.device is None:
            plan.dhcp_on_carrier = True
            continue
        if ip.device is None and ip.autoconf == "static":
            plan.errors.append(ConfigError(path, "a static address needs a device (the 6th field)"))
            continue
        link = LinkPlan(
            selector=Selector(name=ip.device), path=path, dhcp=ip.autoconf in ("dhcp", "both")
        )
        if ip.address is not None:
            link.addresses.append((ip.address, f"{path}.address"))
        if ip.gateway is not None:
            link.routes.append(
                Route(
                    ipaddress.ip_network("0.0.0.0/0" if ip.gateway.version == 4 else "::/0"),
                    ip.gateway,
                    DEFAULT_STATIC_METRIC,
                    None,
                    f"{path}.gateway",
                )
            )
        plan.links.append(link)
        if ip.hostname and plan.hostname is None:
            plan.hostname = ip.hostname
        plan.nameservers.extend(d for d in ip.dns if d not in plan.nameservers)
    return plan


class _Reader:
    """Collects errors while reading typed values out of loose JSON."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors

    def bad(self, path: str, message: str) -> None:
        self.errors.append(ConfigError(path, message))

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        return value

    def items(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(path, f"expected a list, got {type(value).__name__}")
            return []
        return value

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.bad(path, f"expected an integer from {lo} to {hi}, got {value!r}")
            return None
        return value

    def flag(self, value: Any, path: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            self.bad(path, f"expected true or false, got {value!r}")
            return False
        return value

    def address(self, value: Any, path: str) -> IPAddress | None:
        try:
            return ipaddress.ip_address(str(value).strip())
        except ValueError:
            self.bad(path, f"{value!r} is not an IPv4 or IPv6 address")
            return None

    def cidr(self, value: Any, path: str) -> IPInterface | None:
        text = str(value).strip()
        if "/" not in text:
            self.bad(path, f"{value!r} needs a prefix length (CIDR such as 192.168.1.10/24)")
            return None
        try:
            return ipaddress.ip_interface(text)
        except ValueError:
            self.bad(path, f"{value!r} is not an address in CIDR notation")
            return None

    def network(self, value: Any, path: str) -> IPNetwork | None:
        try:
            return ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            self.bad(path, f"{value!r} is not a network in CIDR notation")
            return None

    def mac(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not MAC_RE.match(value):
            self.bad(path, f"{value!r} is not a hardware address like 52:54:00:12:34:56")
            return None
        return value.lower()


def _routes(r: _Reader, items: Any, path: str) -> list[Route]:
    out = []
    for j, item in enumerate(r.items(items, path)):
        rp = f"{path}[{j}]"
        item = r.mapping(item, rp)
        gateway = r.address(item["gateway"], f"{rp}.gateway") if item.get("gateway") else None
        if item.get("gateway") and gateway is None:
            continue
        net_text = item.get("network") or (
            "::/0" if gateway and gateway.version == 6 else "0.0.0.0/0"
        )
        network = r.network(net_text, f"{rp}.network")
        if network is None:
            continue
        if gateway is not None and gateway.version != network.version:
            r.bad(
                f"{rp}.gateway",
                f"gateway {gateway} is IPv{gateway.version} but network {network} "
                f"is IPv{network.version}",
            )
            continue
        source = r.address(item["source"], f"{rp}.source") if item.get("source") else None
        if item.get("source") and source is None:
            continue
        metric = r.integer(item.get("metric"), f"{rp}.metric", 0, 2**32 - 1)
        if item.get("metric") is not None and metric is None:
            continue
        mtu = r.integer(item.get("mtu"), f"{rp}.mtu", 68, 65535)
        if item.get("mtu") is not None and mtu is None:
            continue
        out.append(
            Route(
                network,
                gateway,
                DEFAULT_STATIC_METRIC if metric is None else metric,
                source,
                rp,
                mtu,
            )
        )
    return out


def _addresses(r: _Reader, item: dict[str, Any], path: str) -> list[tuple[IPInterface, str]]:
    out = []
    for j, a in enumerate(r.items(item.get("addresses"), f"{path}.addresses")):
        addr = r.cidr(a, f"{path}.addresses[{j}]")
        if addr is not None:
            out.append((addr, f"{path}.addresses[{j}]"))
    if item.get("cidr"):  # deprecated single-address form, still accepted by Talos
        addr = r.cidr(item["cidr"], f"{path}.cidr")
        if addr is not None:
            out.append((addr, f"{path}.cidr"))
    return out


def _device_selector(
    r: _Reader, plan: NetworkPlan | None, value: Any, path: str
) -> Selector | None:
    ds = r.mapping(value, path)
    fields: dict[str, Any] = {}
    for key, attr in (("hardwareAddr", "hardware_addr"), ("permanentAddr", "permanent_addr")):
        if ds.get(key) is not None:
            if not isinstance(ds[key], str) or not MAC_PATTERN_RE.match(ds[key]):
                r.bad(
                    f"{path}.{key}",
                    f"{ds[key]!r} is not a hardware address or pattern like 52:54:00:*",
                )
                return None
            fields[attr] = ds[key].lower()
    for key, attr in (("driver", "driver"), ("busPath", "bus_path")):
        if ds.get(key) is not None:
            if not isinstance(ds[key], str) or not ds[key]:
                r.bad(f"{path}.{key}", f"expected a name or pattern, got {ds[key]!r}")
                return None
            fields[attr] = ds[key]
    if ds.get("physical") is not None:
        fields["physical"] = r.flag(ds["physical"], f"{path}.physical")
    for key in sorted(set(ds) - {"hardwareAddr", "permanentAddr", "driver", "busPath", "physical"}):
        if plan is not None:
            plan.errors.append(
                ConfigError(f"{path}.{key}", "not supported by this node; ignored", "unsupported")
            )
    if not fields:
        r.bad(
            path,
            "a deviceSelector needs at least one of hardwareAddr, permanentAddr, driver, busPath, physical",
        )
        return None
    return Selector(**fields)


def _dhcp_options(r: _Reader, plan: NetworkPlan, value: Any, path: str) -> int | None:
    """dhcpOptions: routeMetric is acted on; ipv4 (always on) and ipv6/duidv6 are not."""
    opts = r.mapping(value, path)
    for key in sorted(set(opts) - {"routeMetric", "ipv4"}):
        plan.errors.append(
            ConfigError(f"{path}.{key}", "not supported (DHCPv4 only); ignored", "unsupported")
        )
    if opts.get("ipv4") is False:
        plan.errors.append(
            ConfigError(
                f"{path}.ipv4",
                "DHCPv4 cannot be turned off here (no DHCPv6); ignored",
                "unsupported",
            )
        )
    return r.integer(opts.get("routeMetric"), f"{path}.routeMetric", 0, 2**32 - 1)


def _bond(r: _Reader, value: Any, path: str) -> Bond:
    b = r.mapping(value, path)
    bond = Bond()
    mode = b.get("mode", "balance-rr")
    if mode not in BOND_MODES:
        r.bad(f"{path}.mode", f"{mode!r} is not one of {', '.join(BOND_MODES)}")
    else:
        bond.mode = BOND_MODES[mode]
    for j, name in enumerate(r.items(b.get("interfaces"), f"{path}.interfaces")):
        if isinstance(name, str) and IFNAME_RE.match(name):
            bond.slaves.append(Selector(name=name))
        else:
            r.bad(f"{path}.interfaces[{j}]", f"{name!r} is not an interface name")
    for j, sel in enumerate(r.items(b.get("deviceSelectors"), f"{path}.deviceSelectors")):
        selector = _device_selector(r, None, sel, f"{path}.deviceSelectors[{j}]")
        if selector is not None:
            bond.slaves.append(selector)
    for key, (attr, hi) in BOND_INTS.items():
        value = r.integer(b.get(key), f"{path}.{key}", 0, hi)
        if value is not None:
            bond.options[attr] = value
    for key, (attr, names) in BOND_ENUMS.items():
        if b.get(key) is None:
            continue
        if b[key] in names:
            bond.options[attr] = names[b[key]]
        else:
            r.bad(f"{path}.{key}", f"{b[key]!r} is not one of {', '.join(names)}")
    if b.get("useCarrier") is not None:
        bond.options["bond_use_carrier"] = int(r.flag(b["useCarrier"], f"{path}.useCarrier"))
    for key in BOND_UNSUPPORTED:
        if b.get(key) is not None:
            r.errors.append(
                ConfigError(f"{path}.{key}", "not supported by this node; ignored", "unsupported")
            )
    if not bond.slaves:
        r.bad(f"{path}.interfaces", "a bond needs at least one interface")
    return bond


def from_config(config: Any) -> NetworkPlan:
    """The plan from the effective machine config (``machine.network``)."""
    plan = NetworkPlan()
    r = _Reader(plan.errors)
    machine = r.mapping(r.mapping(config, "(config)").get("machine"), "machine")
    net = r.mapping(machine.get("network"), "machine.network")

    hostname = net.get("hostname")
    if hostname is not None:
        if isinstance(hostname, str) and HOSTNAME_RE.fullmatch(hostname):
            plan.hostname = hostname.lower()
        else:
            r.bad("machine.network.hostname", f"{hostname!r} is not a valid hostname")
    for i, ns in enumerate(r.items(net.get("nameservers"), "machine.network.nameservers")):
        addr = r.address(ns, f"machine.network.nameservers[{i}]")
        if addr is not None and addr not in plan.nameservers:
            plan.nameservers.append(addr)
    for i, dom in enumerate(r.items(net.get("searchDomains"), "machine.network.searchDomains")):
        if isinstance(dom, str) and HOSTNAME_RE.fullmatch(dom):
            plan.search_domains.append(dom.lower())
        else:
            r.bad(f"machine.network.searchDomains[{i}]", f"{dom!r} is not a domain name")
    for i, entry in enumerate(
        r.items(net.get("extraHostEntries"), "machine.network.extraHostEntries")
    ):
        ep = f"machine.network.extraHostEntries[{i}]"
        entry = r.mapping(entry, ep)
        ip = r.address(entry.get("ip"), f"{ep}.ip")
        aliases = []
        for j, alias in enumerate(r.items(entry.get("aliases"), f"{ep}.aliases")):
            if isinstance(alias, str) and HOSTNAME_RE.fullmatch(alias):
                aliases.append(alias)
            else:
                r.bad(f"{ep}.aliases[{j}]", f"{alias!r} is not a host name")
        if ip is not None and aliases:
            plan.extra_hosts.append(HostEntry(ip, aliases))

    for i, item in enumerate(r.items(net.get("interfaces"), "machine.network.interfaces")):
        path = f"machine.network.interfaces[{i}]"
        item = r.mapping(item, path)
        for key in item:
            if key in UNSUPPORTED_INTERFACE_FIELDS:
                plan.errors.append(
                    ConfigError(
                        f"{path}.{key}", "not supported by this node; ignored", "unsupported"
                    )
                )
            elif key not in KNOWN_INTERFACE_FIELDS:
                r.bad(f"{path}.{key}", "unknown field")
        name = item.get("interface")
        selector: Selector | None = None
        if name is not None:
            if isinstance(name, str) and IFNAME_RE.match(name):
                selector = Selector(name=name)
            else:
                r.bad(
                    f"{path}.interface",
                    f"{name!r} is not an interface name (1-15 characters, no '/', ':' or space)",
                )
                continue
        elif item.get("deviceSelector") is not None:
            selector = _device_selector(r, plan, item["deviceSelector"], f"{path}.deviceSelector")
            if selector is None:
                continue
        else:
            r.bad(path, "needs interface or deviceSelector")
            continue

        link = LinkPlan(selector=selector, path=path)
        link.ignore = r.flag(item.get("ignore"), f"{path}.ignore")
        link.dhcp = r.flag(item.get("dhcp"), f"{path}.dhcp")
        link.dhcp_metric = _dhcp_options(r, plan, item.get("dhcpOptions"), f"{path}.dhcpOptions")
        link.mtu = r.integer(item.get("mtu"), f"{path}.mtu", 68, 65535)
        link.addresses = _addresses(r, item, path)
        link.routes = _routes(r, item.get("routes"), f"{path}.routes")
        if item.get("bond") is not None:
            if selector.name is None:
                r.bad(f"{path}.interface", "a bond needs a name (interface: bond0)")
                continue
            link.kind = "bond"
            link.bond = _bond(r, item["bond"], f"{path}.bond")
        plan.links.append(link)

        for j, vlan in enumerate(r.items(item.get("vlans"), f"{path}.vlans")):
            vp = f"{path}.vlans[{j}]"
            vlan = r.mapping(vlan, vp)
            vid = r.integer(vlan.get("vlanId"), f"{vp}.vlanId", 1, 4094)
            if vid is None:
                if vlan.get("vlanId") is None:
                    r.bad(f"{vp}.vlanId", "is required")
                continue
            if selector.name is None:
                r.bad(f"{vp}", "VLANs need their parent selected by interface name")
                continue
            vname = f"{selector.name}.{vid}"
            if len(vname) > 15:
                r.bad(f"{vp}.vlanId", f"VLAN link name {vname!r} is longer than 15 characters")
                continue
            vlink = LinkPlan(
                selector=Selector(name=vname), path=vp, kind="vlan", parent=selector, vlan_id=vid
            )
            vlink.dhcp = r.flag(vlan.get("dhcp"), f"{vp}.dhcp")
            vlink.dhcp_metric = _dhcp_options(r, plan, vlan.get("dhcpOptions"), f"{vp}.dhcpOptions")
            vlink.mtu = r.integer(vlan.get("mtu"), f"{vp}.mtu", 68, 65535)
            vlink.addresses = _addresses(r, vlan, vp)
            vlink.routes = _routes(r, vlan.get("routes"), f"{vp}.routes")
            plan.links.append(vlink)
    return plan


def merge(early: NetworkPlan, config: NetworkPlan) -> NetworkPlan:
    """The config wins per link and per setting; links it does not mention keep the early plan.

    This keeps the path to the config server working when the config only
    describes some links (Talos merges cmdline and machine config the same way).
    """
    configured = {str(link.selector) for link in config.links}
    links = [link for link in early.links if str(link.selector) not in configured] + config.links
    return NetworkPlan(
        hostname=config.hostname or early.hostname,
        nameservers=config.nameservers or early.nameservers,
        search_domains=config.search_domains or early.search_domains,
        extra_hosts=config.extra_hosts,
        links=links,
        dhcp_on_carrier=early.dhcp_on_carrier,  # still only on links no plan entry selects
        errors=early.errors + config.errors,
    )
