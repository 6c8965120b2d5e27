"""Wait for the devices the node needs, as udev reports them, with a timeout that names what is missing.

Runs as the one-shot ``devices`` service (``python -I -m talos_init.devices
--need net``), after coldplug, not inside PID 1: importing pyudev runs
``ldconfig -p`` through subprocess to find libudev (a wait behind the reaper's
back) and costs PID 1 memory it keeps forever; a child pays once and exits.

A need is ``net`` (any interface but lo), ``disk`` (any whole disk but
loop/ram/zram), or ``net:NAME`` / ``disk:NAME`` for one device by name.
Only devices udev has finished processing count (``is_initialized``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from talos_init.log import get_logger

log = get_logger("devices")

VIRTUAL_DISKS = ("loop", "ram", "zram", "nbd")


@dataclass(frozen=True)
class Need:
    kind: str  # "net" or "disk"
    name: str | None = None  # one device by name, or any of the kind

    @property
    def subsystem(self) -> str:
        return "net" if self.kind == "net" else "block"

    def describe(self) -> str:
        what = "network interface" if self.kind == "net" else "disk"
        return f"{what} {self.name}" if self.name else (
            "a network interface other than lo" if self.kind == "net"
            else "a disk (not loop/ram/zram/nbd)")

    def accepts(self, subsystem: str, sys_name: str, devtype: str | None) -> bool:
        if subsystem != self.subsystem:
            return False
        if self.name is not None:
            return sys_name == self.name
        if self.kind == "net":
            return sys_name != "lo"
        return devtype == "disk" and not sys_name.startswith(VIRTUAL_DISKS)


def parse_need(text: str) -> Need:
    kind, _, name = text.partition(":")
    if kind not in ("net", "disk"):
        raise ValueError(f"need {text!r}: kind must be 'net' or 'disk' (optionally ':NAME')")
    return Need(kind, name or None)


class DevicesMissing(Exception):
    def __init__(self, missing: list[Need], timeout: float):
        self.missing = missing
        super().__init__(f"after {timeout:g}s still missing: "
                         + "; ".join(n.describe() for n in missing))


Device = tuple[str, str, "str | None"]  # (subsystem, sys_name, devtype)


def unmet(needs: Iterable[Need], devices: Iterable[Device]) -> list[Need]:
    devices = list(devices)
    return [n for n in needs if not any(n.accepts(*d) for d in devices)]


def _initialized(context, subsystems: set[str]) -> list[Device]:
    found = []
    for subsystem in sorted(subsystems):
        for dev in context.list_devices(subsystem=subsystem):
            if dev.is_initialized:
                found.append((dev.subsystem, dev.sys_name, dev.device_type))
    return found


def wait_devices(needs: list[Need], timeout: float, context=None,
                 clock: Callable[[], float] = time.monotonic) -> list[Device]:
    """Return the matching devices once every need is met; raise ``DevicesMissing`` at the timeout."""
    import pyudev  # here, not at import: the module's pure parts must not need libudev

    context = context or pyudev.Context()
    subsystems = {n.subsystem for n in needs}
    # Listen before enumerating, so a device appearing in between is not lost.
    monitor = pyudev.Monitor.from_netlink(context)
    for subsystem in sorted(subsystems):
        monitor.filter_by(subsystem)
    monitor.start()
    deadline = clock() + timeout
    while True:
        devices = _initialized(context, subsystems)
        missing = unmet(needs, devices)
        if not missing:
            return [d for d in devices if any(n.accepts(*d) for n in needs)]
        left = deadline - clock()
        if left <= 0:
            raise DevicesMissing(missing, timeout)
        log.info("devices_waiting", missing=[n.describe() for n in missing], left=round(left, 1))
        monitor.poll(timeout=min(left, 5.0))  # an event or 5 s: enumerate again either way


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m talos_init.devices", description=__doc__.splitlines()[0])
    parser.add_argument("--need", action="append", default=[], help="net, disk, net:NAME or disk:NAME")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    from talos_init import log as talos_log

    talos_log.configure()  # one line per event on stderr, which the supervisor captures
    try:
        needs = [parse_need(n) for n in args.need] or [Need("net")]
    except ValueError as e:
        parser.error(str(e))
    start = time.monotonic()
    try:
        found = wait_devices(needs, args.timeout)
    except DevicesMissing as e:
        log.error("devices_missing", missing=[n.describe() for n in e.missing], timeout=args.timeout,
                  message=str(e))
        print(f"devices: {e}", file=sys.stderr)
        return 1
    log.info("devices_ready", devices=[d[1] for d in found], seconds=round(time.monotonic() - start, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
