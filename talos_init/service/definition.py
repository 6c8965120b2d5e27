"""Service definition files: the format, loaded and validated like user input.

One YAML (or JSON) mapping per file; the format is documented in
``docs/for-devs/services.md``. Every problem becomes one ``DefinitionError``
naming the file and the field path; all of them are reported together, and
nothing starts while any remains. Validation is pure: ``parse(data, source)``
takes already-decoded data; reading files is ``talos_init.service.loader``'s job.
"""

from __future__ import annotations

import ipaddress
import re
import signal as _signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from talos_init.record import field, record
from talos_init.service.backoff import Backoff

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
PLACEHOLDER_RE = re.compile(r"\$\{config:([A-Za-z0-9_.-]+)(?::-([^}]*))?\}|\$\$|\$")
CONFIG_PATH_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
SIZE_RE = re.compile(r"^(\d+)\s*([KMGT]i?)?B?$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
RLIMITS = {"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "core": "RLIMIT_CORE",
           "memlock": "RLIMIT_MEMLOCK", "stack": "RLIMIT_STACK"}
# Linux capability numbers (linux/capability.h); names as in capabilities(7).
CAPABILITIES = {name: i for i, name in enumerate([
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore"])}


@record(frozen=True)
class DefinitionError:
    source: str  # file name
    path: str  # field path, e.g. "readiness.probe.period"
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return f"{where}: {self.message}"


class InvalidDefinitions(Exception):
    """Raised with every error found; nothing may start."""

    def __init__(self, errors: list[Any]):
        self.errors = list(errors)
        super().__init__("invalid service definitions:\n" + "\n".join(f"  {e}" for e in errors))


@record(frozen=True)
class Condition:
    kind: str  # a key of the conditions registry
    arg: Any

    def __str__(self) -> str:
        return f"{self.kind} {self.arg}" if self.arg is not True else self.kind


@record(frozen=True)
class Probe:
    kind: str  # http | tcp | unix
    target: str  # URL, host:port, or socket path
    initial_delay: float = 0.0
    period: float = 1.0
    timeout: float = 1.0
    failure_threshold: int = 3


@record(frozen=True)
class Readiness:
    kind: str  # notify | probe | exit | none
    probe: Probe | None = None


@record(frozen=True)
class Confinement:
    cgroup: str = "system"  # the service lives in <cgroup root>/<cgroup>/<id>
    oom_score_adj: int | None = None
    memory_max: int | None = None  # bytes
    nice: int | None = None  # the process's nice and its cgroup's cpu.weight.nice
    cpu_weight: int | None = None  # the cgroup's cpu.weight alone: nothing inherits a nice
    caps_keep: frozenset[int] | None = None  # None: keep all (after drop)
    caps_drop: frozenset[int] = frozenset()
    no_new_privs: bool = False
    user: int | None = None
    group: int | None = None
    rlimits: dict[str, int] = field(default_factory=dict)

    def cpu_share(self) -> float:
        """The cgroup's CPU weight as the kernel sets it: ``cpu_weight``, or from ``nice``
        (each step 1.25 times the next, as the scheduler's table: -10 ~932, 0 is 100)."""
        if self.cpu_weight is not None:
            return float(self.cpu_weight)
        return 100.0 * 1.25 ** -(self.nice or 0)

    def kept_capabilities(self) -> frozenset[int] | None:
        """Capabilities the process keeps, or None when nothing is dropped."""
        if self.caps_keep is None and not self.caps_drop:
            return None
        base = frozenset(CAPABILITIES.values()) if self.caps_keep is None else self.caps_keep
        return base - self.caps_drop


@record(frozen=True)
class Definition:
    id: str
    argv: tuple[str, ...]
    source: str = "<memory>"
    description: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    working_directory: str = "/"
    depends_on: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    skip_unless: tuple[Condition, ...] = ()
    # A one-shot whose work someone else did (PID 1's early /var): when all of these hold once
    # its dependencies are ready (before its conditions), it is finished, exit ok, no process.
    done_if: tuple[Condition, ...] = ()
    readiness: Readiness = field(default_factory=lambda: Readiness("none"))
    restart: str = "always"  # always | on-failure | never
    backoff: Backoff = field(default_factory=Backoff)
    stop_signal: int = int(_signal.SIGTERM)
    stop_timeout: float = 10.0
    # control-group: nothing outlives the main process; process: only the main process is
    # signalled and killed (containerd: its shims and containers must survive its restart).
    kill_mode: str = "control-group"
    log_ring_bytes: int = 256 * 1024
    log_max_line: int = 4096
    args_from: str | None = None  # config path of a mapping turned into --key=value
    confinement: Confinement = field(default_factory=Confinement)

    @property
    def one_shot(self) -> bool:
        return self.readiness.kind == "exit"


# -- validation helpers --------------------------------------------------------

class _Checker:
    """Collects errors for one file; each helper returns a default on error."""

    def __init__(self, source: str, condition_kinds: set[str]):
        self.source = source
        self.errors: list[DefinitionError] = []
        self.condition_kinds = condition_kinds

    def error(self, path: str, message: str) -> None:
        self.errors.append(DefinitionError(self.source, path, message))

    def mapping(self, value: Any, path: str, allowed: set[str],
                required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                self.error(_join(path, str(key)),
                           f"unknown field (known: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value:
                self.error(_join(path, key), "is required")
        return {k: v for k, v in value.items() if isinstance(k, str) and k in allowed}

    def string(self, value: Any, path: str, default: str = "", empty: bool = False) -> str:
        if not isinstance(value, str):
            self.error(path, f"must be a string, got {_kind(value)}")
            return default
        if not empty and not value:
            self.error(path, "must not be empty")
            return default
        if "\0" in value:
            self.error(path, "must not contain a NUL byte")
            return default
        return value

    def number(self, value: Any, path: str, default: float, minimum: float = 0.0,
               positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(path, f"must be a number of seconds, got {_kind(value)}")
            return default
        if value < minimum or (positive and value <= 0):
            self.error(path, f"must be {'> ' if positive else '>= '}{minimum:g}, got {value}")
            return default
        return float(value)

    def integer(self, value: Any, path: str, default: int, lo: int | None = None,
                hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be an integer, got {_kind(value)}")
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.error(path, f"must be between {lo} and {hi}, got {value}")
            return default
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, got {_kind(value)}")
            return False
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...], default: str) -> str:
        if value not in choices:
            self.error(path, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def string_list(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            self.error(path, f"must be a list of strings, got {_kind(value)}")
            return []
        return [self.string(v, f"{path}[{i}]") for i, v in enumerate(value)]

    def size(self, value: Any, path: str) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and (m := SIZE_RE.match(value.strip())):
            return int(m.group(1)) * SIZE_UNITS[(m.group(2) or "")[:1].lower()]
        self.error(path, f"must be a size such as 512Mi or a byte count, got {value!r}")
        return None

    def placeholders(self, value: str, path: str) -> None:
        for m in PLACEHOLDER_RE.finditer(value):
            if m.group(0) == "$":
                self.error(path, "a lone '$' must be written '$$'; "
                                 "config values are written ${config:machine.x.y}")
            elif m.group(1) and not CONFIG_PATH_RE.match(m.group(1)):
                self.error(path, f"bad config path {m.group(1)!r}")

    def conditions(self, value: Any, path: str) -> tuple[Condition, ...]:
        if not isinstance(value, list):
            self.error(path, f"must be a list, got {_kind(value)}")
            return ()
        out = []
        for i, item in enumerate(value):
            p = f"{path}[{i}]"
            if not isinstance(item, dict) or len(item) != 1:
                self.error(p, "must be a mapping with one key, e.g. {file_exists: /path}")
                continue
            (kind, arg), = item.items()
            if kind not in self.condition_kinds:
                self.error(_join(p, str(kind)), "unknown condition (known: "
                           f"{', '.join(sorted(self.condition_kinds))})")
                continue
            if kind in ("network_up", "time_sane"):
                if arg is not True:
                    self.error(_join(p, kind), "must be true")
                    continue
            elif kind == "file_exists":
                arg = self.string(arg, _join(p, kind))
                if arg and not arg.startswith("/"):
                    self.error(_join(p, kind), "must be an absolute path")
            elif kind == "config_in":
                arg = self.string(arg, _join(p, kind))
                if arg and not CONFIG_IN_RE.match(arg):
                    self.error(_join(p, kind), "must be PATH=VALUE[,VALUE...], e.g. "
                                               f"machine.type=controlplane,init, got {arg!r}")
            elif not isinstance(arg, (str, bool, int)):
                self.error(_join(p, kind), f"must be a string, got {_kind(arg)}")
                continue
            out.append(Condition(kind, arg))
        return tuple(out)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


TOP = {"id", "description", "argv", "environment", "working_directory", "depends_on",
       "conditions", "skip_unless", "done_if", "readiness", "restart", "backoff", "stop", "logs",
       "args_from", "confinement"}
DEFAULT_CONDITION_KINDS = {"file_exists", "service_ready", "network_up", "time_sane", "config_in"}
# config_in: a dotted path of the effective config, then the values it may have.
CONFIG_IN_RE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*=[^,=\s]+(,[^,=\s]+)*$")


def parse(data: Any, source: str = "<memory>",
          condition_kinds: set[str] | None = None
          ) -> tuple[Definition | None, list[DefinitionError]]:
    """Validate one decoded document; returns the definition or every error."""
    c = _Checker(source, condition_kinds or DEFAULT_CONDITION_KINDS)
    d = c.mapping(data, "", TOP, required=("id", "argv"))
    kw: dict[str, Any] = {"source": source}

    if "id" in d:
        ident = c.string(d["id"], "id")
        if ident and not ID_RE.match(ident):
            c.error("id", f"must be lowercase letters, digits, '-', '_' or '.', got {ident!r}")
        kw["id"] = ident
        stem = Path(source).stem
        if ident and source != "<memory>" and stem != ident:
            c.error("id", f"must match the file name ({stem!r}), got {ident!r}")
    if "description" in d:
        kw["description"] = c.string(d["description"], "description", empty=True)
    if "argv" in d:
        argv = c.string_list(d["argv"], "argv")
        if isinstance(d["argv"], list) and not d["argv"]:
            c.error("argv", "must name at least the program")
        elif argv and argv[0] and not argv[0].startswith("/"):
            c.error("argv[0]",
                    f"must be an absolute path (no PATH search in PID 1), got {argv[0]!r}")
        for i, arg in enumerate(argv):
            c.placeholders(arg, f"argv[{i}]")
        kw["argv"] = tuple(argv)
    if "environment" in d:
        env = d["environment"]
        if not isinstance(env, dict):
            c.error("environment", f"must be a mapping of strings, got {_kind(env)}")
        else:
            out = {}
            for k, v in env.items():
                if not isinstance(k, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
                    c.error(f"environment.{k}", "must be a variable name")
                    continue
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    v = str(v)
                out[k] = c.string(v, f"environment.{k}", empty=True)
                c.placeholders(out[k], f"environment.{k}")
            kw["environment"] = out
    if "working_directory" in d:
        wd = c.string(d["working_directory"], "working_directory", "/")
        if not wd.startswith("/"):
            c.error("working_directory", f"must be an absolute path, got {wd!r}")
        kw["working_directory"] = wd
    if "depends_on" in d:
        deps = c.string_list(d["depends_on"], "depends_on")
        if len(set(deps)) != len(deps):
            c.error("depends_on", "lists a service twice")
        if kw.get("id") in deps:
            c.error("depends_on", "a service cannot depend on itself")
        kw["depends_on"] = tuple(dict.fromkeys(x for x in deps if x))
    for key in ("conditions", "skip_unless", "done_if"):
        if key in d:
            kw[key] = c.conditions(d[key], key)
    if "readiness" in d:
        kw["readiness"] = _readiness(c, d["readiness"])
    if kw.get("done_if") and kw.get("readiness", Readiness("none")).kind != "exit":
        c.error("done_if", "only a one-shot (readiness: {exit: true}) can be done without running")
    if "restart" in d:
        kw["restart"] = c.choice(d["restart"], "restart", ("always", "on-failure", "never"),
                                 "always")
    if "backoff" in d:
        b = c.mapping(d["backoff"], "backoff", {"initial", "max", "stable_after"})
        initial = c.number(b.get("initial", 0.1), "backoff.initial", 0.1, positive=True)
        maximum = c.number(b.get("max", 30.0), "backoff.max", 30.0, positive=True)
        if maximum < initial:
            c.error("backoff.max", f"must be >= backoff.initial ({initial:g})")
        kw["backoff"] = Backoff(initial=initial, maximum=max(initial, maximum),
                                stable_after=c.number(b.get("stable_after", 10.0),
                                                      "backoff.stable_after", 10.0, positive=True))
    if "stop" in d:
        s = c.mapping(d["stop"], "stop", {"signal", "timeout", "kill_mode"})
        if "signal" in s:
            kw["stop_signal"] = _signal_number(c, s["signal"], "stop.signal")
        if "timeout" in s:
            kw["stop_timeout"] = c.number(s["timeout"], "stop.timeout", 10.0, positive=True)
        if "kill_mode" in s:
            kw["kill_mode"] = c.choice(s["kill_mode"], "stop.kill_mode",
                                       ("control-group", "process"), "control-group")
    if "logs" in d:
        lg = c.mapping(d["logs"], "logs", {"ring_bytes", "max_line"})
        if "ring_bytes" in lg:
            kw["log_ring_bytes"] = c.size(lg["ring_bytes"], "logs.ring_bytes") or 256 * 1024
        if "max_line" in lg:
            kw["log_max_line"] = c.integer(lg["max_line"], "logs.max_line", 4096, 80, 1 << 20)
        if kw.get("log_max_line", 4096) > kw.get("log_ring_bytes", 256 * 1024):
            c.error("logs.max_line", "must not exceed logs.ring_bytes")
    if "args_from" in d:
        a = c.mapping(d["args_from"], "args_from", {"config"}, required=("config",))
        if "config" in a:
            p = c.string(a["config"], "args_from.config")
            if p and not CONFIG_PATH_RE.match(p):
                c.error("args_from.config", f"bad config path {p!r}")
            kw["args_from"] = p
    if "confinement" in d:
        kw["confinement"] = _confinement(c, d["confinement"])

    if c.errors or "id" not in kw or "argv" not in kw:
        return None, c.errors
    return Definition(**kw), []


def _readiness(c: _Checker, value: Any) -> Readiness:
    r = c.mapping(value, "readiness", {"notify", "exit", "probe"})
    if len(r) > 1:
        c.error("readiness", f"choose one of notify, exit, probe; got {', '.join(sorted(r))}")
        return Readiness("none")
    if "notify" in r:
        return Readiness("notify" if c.boolean(r["notify"], "readiness.notify") else "none")
    if "exit" in r:
        return Readiness("exit" if c.boolean(r["exit"], "readiness.exit") else "none")
    if "probe" in r:
        p = c.mapping(r["probe"], "readiness.probe",
                      {"http", "tcp", "unix", "initial_delay", "period", "timeout",
                       "failure_threshold"})
        kinds = [k for k in ("http", "tcp", "unix") if k in p]
        if len(kinds) != 1:
            c.error("readiness.probe", "needs exactly one of http, tcp, unix")
            return Readiness("none")
        kind = kinds[0]
        path = f"readiness.probe.{kind}"
        target = c.string(p[kind], path)
        if target:
            _check_probe_target(c, kind, target, path)
        probe = Probe(
            kind, target,
            initial_delay=c.number(p.get("initial_delay", 0.0), "readiness.probe.initial_delay",
                                   0.0),
            period=c.number(p.get("period", 1.0), "readiness.probe.period", 1.0, minimum=0.01),
            timeout=c.number(p.get("timeout", 1.0), "readiness.probe.timeout", 1.0, positive=True),
            failure_threshold=c.integer(p.get("failure_threshold", 3),
                                        "readiness.probe.failure_threshold", 3, 1, 1000))
        return Readiness("probe", probe)
    return Readiness("none")


def _check_probe_target(c: _Checker, kind: str, target: str, path: str) -> None:
    # PID 1 never resolves names (a blocking getaddrinfo would stall the loop).
    if kind == "unix":
        if not target.startswith("/"):
            c.error(path, f"must be an absolute socket path, got {target!r}")
        return
    if kind == "http":
        parts = urlsplit(target)
        if parts.scheme != "http":
            c.error(path, f"must be an http:// URL (no TLS in PID 1), got {target!r}")
            return
        host, port_ok = parts.hostname, True
        try:
            _ = parts.port  # raises on a bad port
        except ValueError:
            port_ok = False
    else:
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        port_ok = port.isdigit() and 0 < int(port) < 65536
    if not port_ok:
        c.error(path, f"bad port in {target!r}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host or "")
        except ValueError:
            c.error(path, "host must be an IP address or localhost "
                          f"(PID 1 does not resolve names), got {host!r}")


def _signal_number(c: _Checker, value: Any, path: str) -> int:
    name = value if isinstance(value, str) else ""
    if name and not name.startswith("SIG"):
        name = "SIG" + name
    try:
        sig = _signal.Signals[name]
    except KeyError:
        c.error(path, f"must be a signal name such as SIGTERM, got {value!r}")
        return int(_signal.SIGTERM)
    if sig in (_signal.SIGKILL, _signal.SIGSTOP):
        c.error(path, f"{sig.name} cannot be the stop signal (SIGKILL follows the timeout anyway)")
    return int(sig)


def _confinement(c: _Checker, value: Any) -> Confinement:
    p = "confinement"
    d = c.mapping(value, p, {"cgroup", "oom_score_adj", "memory_max", "capabilities",
                             "no_new_privs", "user", "group", "rlimits", "nice", "cpu_weight"})
    kw: dict[str, Any] = {}
    if "cgroup" in d:
        g = c.string(d["cgroup"], f"{p}.cgroup", "system")
        if not re.match(r"^[a-z0-9][a-z0-9_.-]*$", g):
            c.error(f"{p}.cgroup", f"must be one plain directory name, got {g!r}")
        else:
            kw["cgroup"] = g
    if "oom_score_adj" in d:
        kw["oom_score_adj"] = c.integer(d["oom_score_adj"], f"{p}.oom_score_adj", 0, -1000, 1000)
    if "memory_max" in d:
        kw["memory_max"] = c.size(d["memory_max"], f"{p}.memory_max")
    if "nice" in d:
        kw["nice"] = c.integer(d["nice"], f"{p}.nice", 0, -20, 19)
    if "cpu_weight" in d:
        if "nice" in d:  # two views of one cgroup setting
            c.error(f"{p}.cpu_weight", "set nice or cpu_weight, not both (nice sets the "
                    "cgroup's weight too)")
        else:
            kw["cpu_weight"] = c.integer(d["cpu_weight"], f"{p}.cpu_weight", 100, 1, 10000)
    if "no_new_privs" in d:
        kw["no_new_privs"] = c.boolean(d["no_new_privs"], f"{p}.no_new_privs")
    for key in ("user", "group"):
        if key in d:
            kw[key] = c.integer(d[key], f"{p}.{key}", 0, 0, 2**32 - 2)
    if "rlimits" in d:
        r = c.mapping(d["rlimits"], f"{p}.rlimits", set(RLIMITS))
        kw["rlimits"] = {k: c.integer(v, f"{p}.rlimits.{k}", 0, 0, 2**62) for k, v in r.items()}
    if "capabilities" in d:
        caps = c.mapping(d["capabilities"], f"{p}.capabilities", {"keep", "drop"})
        for key in ("keep", "drop"):
            if key not in caps:
                continue
            names = c.string_list(caps[key], f"{p}.capabilities.{key}")
            nums = set()
            for i, name in enumerate(names):
                n = name.lower().removeprefix("cap_")
                if name == "all" and key == "drop":
                    nums |= set(CAPABILITIES.values())
                elif n in CAPABILITIES:
                    nums.add(CAPABILITIES[n])
                elif name:
                    c.error(f"{p}.capabilities.{key}[{i}]", f"unknown capability {name!r}")
            kw["caps_keep" if key == "keep" else "caps_drop"] = frozenset(nums)
    return Confinement(**kw)
