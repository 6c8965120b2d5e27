"""Start conditions: a registry of small named checks, read from the host on demand.

Each check returns None when it holds, or a short reason when it does not.
``service_ready`` is an ordering edge that the core and the graph handle
themselves, so here it always holds. Add a kind by adding a function to
``Conditions.checks`` (and its name to the definition loader's known kinds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from talos_init.paths import Paths
from talos_init.service import configvalues
from talos_init.service.definition import Condition, Definition

TIME_SANE_AFTER = 1704067200  # 2024-01-01: a clock before this was never set


class Conditions:
    def __init__(self, paths: Paths, wall_clock: Callable[[], float] = time.time):
        self.paths = paths
        self.wall_clock = wall_clock
        self.checks: dict[str, Callable[[Any], str | None]] = {
            "file_exists": self.file_exists,
            "service_ready": lambda arg: None,
            "network_up": self.network_up,
            "time_sane": self.time_sane,
            "config_in": self.config_in,
        }

    def kinds(self) -> set[str]:
        return set(self.checks)

    def file_exists(self, arg: Any) -> str | None:
        return None if self.paths.at(str(arg)).exists() else f"file_exists {arg}"

    def network_up(self, arg: Any) -> str | None:
        """A non-loopback link is up and there is a default route (IPv4 or IPv6)."""
        net = self.paths.at("/sys/class/net")
        try:
            links = [p for p in net.iterdir() if p.name != "lo"]
        except OSError:
            links = []
        if not any(_link_up(p) for p in links):
            return "network_up (no link is up)"
        if not (_default_route(self.paths.at("/proc/net/route"), 1, "00000000")
                or _default_route(self.paths.at("/proc/net/ipv6_route"), 0, "0" * 32)):
            return "network_up (no default route)"
        return None

    def time_sane(self, arg: Any) -> str | None:
        return None if self.wall_clock() >= TIME_SANE_AFTER else "time_sane (clock not set)"

    def config_in(self, arg: Any) -> str | None:
        """``machine.type=controlplane,init``: that value of the effective config is one of these."""
        path, _, wanted = str(arg).partition("=")
        try:
            config = configvalues.load(self.paths.effective_config)
        except configvalues.ConfigValueError as e:
            return f"config_in {arg} ({e})"
        value = configvalues.lookup(config, path) if config is not None else None
        if isinstance(value, str) and value in wanted.split(","):
            return None
        shown = value if isinstance(value, (str, int, float, bool)) else "not set"
        return f"config_in {arg} ({path} is {shown})"

    def _check(self, conds: tuple[Condition, ...]) -> str | None:
        unmet = [r for c in conds if (r := self.checks[c.kind](c.arg))]
        return ", ".join(unmet) or None

    def check_conditions(self, d: Definition) -> str | None:
        return self._check(d.conditions)

    def check_skip(self, d: Definition) -> str | None:
        reason = self._check(d.skip_unless)
        return f"skip_unless not met: {reason}" if reason else None

    def check_done(self, d: Definition) -> str | None:
        """Why the one-shot's work is already done (every done_if holds), else None."""
        if not d.done_if or self._check(d.done_if) is not None:
            return None
        return "done_if holds: " + ", ".join(f"{c.kind} {c.arg}" for c in d.done_if)


def _link_up(link: Path) -> bool:
    try:  # carrier reads fail with EINVAL while a link is down: that is "not up"
        return ((link / "operstate").read_text().strip() in ("up", "unknown")
                and (link / "carrier").read_text().strip() == "1")
    except OSError:
        return False


def _default_route(path: Path, column: int, zero: str) -> bool:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        cols = line.split()
        # /proc/net/route: Iface Destination ... Mask at 7; ipv6_route: dest, prefix len at 1
        if len(cols) > 7 and cols[column] == zero and (column == 1 and cols[7] == "00000000"
                                                       or column == 0 and cols[1] == "00"):
            return True
    return False
