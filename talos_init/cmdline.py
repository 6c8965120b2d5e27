"""The kernel command line, parsed once into one typed object.

Unknown parameters are ignored (the kernel and other tools own them); a
malformed value of a parameter we own is reported by name in ``errors`` and
left unset, so boot goes on with what is good.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from talos_init.record import field, record

# Use with fullmatch: "$" alone would let a trailing newline through.
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$", re.I)
HEX_RE = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "sha512": re.compile(r"^[0-9a-f]{128}$")}
DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
IP_AUTOCONF = {"off", "none", "static", "on", "any", "dhcp", "dhcp6", "auto6", "both"}


@record(frozen=True)
class CmdlineError:
    param: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.param}={self.value!r}: {self.reason}"


@record(frozen=True)
class IpConfig:
    """One ``ip=`` parameter, kernel/dracut style.

    ``ip=dhcp``, ``ip=eth0:dhcp``, or
    ``ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>:<ntp0>``
    (IPv6 addresses in brackets).
    """

    autoconf: str  # "static" when an address is given with off/none, else dhcp/dhcp6/...
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None = None
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    hostname: str | None = None
    device: str | None = None
    dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    ntp: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()


@record
class KernelCmdline:
    config_url: str | None = None
    config_sha256: str | None = None
    config_sha512: str | None = None
    config_deadline: float | None = None  # seconds; None means retry forever
    hostname: str | None = None
    ip: list[IpConfig] = field(default_factory=list)
    halt_if_failed: bool = False
    panic: int | None = None
    consoles: list[str] = field(default_factory=list)
    params: dict[str, str | None] = field(default_factory=dict)  # every parameter, last wins
    errors: list[CmdlineError] = field(default_factory=list)

    @property
    def wait_on_failure(self) -> bool:
        """True when a failed boot must wait instead of rebooting."""
        return self.halt_if_failed or self.panic == 0


def split(text: str) -> list[tuple[str, str | None]]:
    """Split like the kernel's ``next_arg``: spaces separate, double quotes group."""
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        in_quote = False
        start = i
        while i < n and (in_quote or not text[i].isspace()):
            if text[i] == '"':
                in_quote = not in_quote
            i += 1
        token = text[start:i].replace('"', "")
        key, sep, value = token.partition("=")
        out.append((key, value if sep else None))
    return out


def _flag(value: str | None) -> bool | None:
    if value is None or value.lower() in ("1", "true", "yes", "on", ""):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    return None


def parse_duration(value: str) -> float:
    match = DURATION_RE.match(value.strip())
    if not match:
        raise ValueError("expected a duration such as 300, 90s, 5m or 1h")
    return float(match.group(1)) * DURATION_UNITS[match.group(2)]


def _ip_fields(value: str) -> list[str]:
    """Split on ':' outside of [brackets] (IPv6 addresses)."""
    fields: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in value:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == ":" and depth == 0:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur))
    return [f[1:-1] if f.startswith("[") and f.endswith("]") else f for f in fields]


def parse_ip(value: str) -> IpConfig:
    """Parse one ``ip=`` value; raises ValueError naming the bad field."""
    if value in IP_AUTOCONF:
        return IpConfig(autoconf="dhcp" if value in ("on", "any") else value)
    fields = _ip_fields(value)
    if len(fields) == 2 and fields[1] in IP_AUTOCONF:  # ip=<device>:<autoconf>
        return IpConfig(autoconf=fields[1], device=fields[0] or None)
    if len(fields) < 7:
        raise ValueError("expected dhcp, <device>:dhcp or "
                         "<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>[:<dns0>[:<dns1>[:<ntp0>]]]")
    fields += [""] * (10 - len(fields))
    client, _server, gw, mask, hostname, device, autoconf, dns0, dns1, ntp0 = fields[:10]
    autoconf = autoconf or "off"
    if autoconf not in IP_AUTOCONF:
        raise ValueError(f"autoconf {autoconf!r} is not one of {', '.join(sorted(IP_AUTOCONF))}")

    def addr(name: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        if not text:
            return None
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not an IP address") from None

    address = None
    if client:
        ip = addr("client address", client)
        assert ip is not None  # client is not empty
        try:
            if mask:
                prefix = (mask if mask.isdigit()
                          else str(ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen))
            else:
                prefix = "32" if ip.version == 4 else "128"
            address = ipaddress.ip_interface(f"{ip}/{prefix}")
        except ValueError:
            raise ValueError(f"netmask {mask!r} is not a netmask or prefix length") from None
    if hostname and not HOSTNAME_RE.fullmatch(hostname):
        raise ValueError(f"hostname {hostname!r} is not a valid hostname")
    if autoconf in ("off", "none", "static"):
        if address is None:
            raise ValueError(f"autoconf {autoconf!r} needs a client address")
        autoconf = "static"
    return IpConfig(
        autoconf=autoconf,
        address=address,
        gateway=addr("gateway", gw),
        hostname=hostname or None,
        device=device or None,
        dns=tuple(a for a in (addr("dns0", dns0), addr("dns1", dns1)) if a is not None),
        ntp=tuple(a for a in (addr("ntp0", ntp0),) if a is not None),
    )


def parse(text: str) -> KernelCmdline:
    cmd = KernelCmdline()
    config_sources: dict[str, str] = {}
    for key, value in split(text):
        cmd.params[key] = value

        def bad(reason: str, key: str = key, value: str | None = value) -> None:
            cmd.errors.append(CmdlineError(key, value or "", reason))

        if key in ("talos.config", "talos.userdata"):
            if not value:
                bad("needs a URL")
                continue
            if not re.match(r"^(https?|file)://", value) and value != "none":
                bad("the URL must start with http://, https:// or file://")
                continue
            config_sources[key] = value
        elif key in ("talos.config.sha256", "talos.config.sha512"):
            algo = key.rsplit(".", 1)[1]
            digest = (value or "").lower()
            if not HEX_RE[algo].match(digest):
                bad(f"expected {64 if algo == 'sha256' else 128} hex digits")
                continue
            setattr(cmd, f"config_{algo}", digest)
        elif key == "talos.config.deadline":
            try:
                cmd.config_deadline = parse_duration(value or "")
            except ValueError as e:
                bad(str(e))
        elif key == "talos.hostname":
            if not value or not HOSTNAME_RE.fullmatch(value):
                bad("not a valid hostname (letters, digits, '-' and '.', at most 253 characters)")
                continue
            cmd.hostname = value.lower()
        elif key == "ip":
            try:
                cmd.ip.append(parse_ip(value or ""))
            except ValueError as e:
                bad(str(e))
        elif key == "talos.halt_if_failed":
            flag = _flag(value)
            if flag is None:
                bad("expected no value, 1/0, true/false or yes/no")
                continue
            cmd.halt_if_failed = flag
        elif key == "panic":
            try:
                cmd.panic = int(value or "")
            except ValueError:
                bad("expected an integer number of seconds")
        elif key == "console":
            if not value:
                bad("needs a device, such as ttyS0,115200")
                continue
            cmd.consoles.append(value)
    if len(set(config_sources.values())) > 1:
        cmd.errors.append(CmdlineError(
            "talos.config", config_sources["talos.config"],
            f"conflicts with talos.userdata={config_sources['talos.userdata']!r}; using talos.config"))
    url = config_sources.get("talos.config") or config_sources.get("talos.userdata")
    cmd.config_url = None if url == "none" else url
    return cmd


def read(path: str | Path = "/proc/cmdline") -> KernelCmdline:
    return parse(Path(path).read_text())
