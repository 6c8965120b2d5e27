"""Real netlink in namespaces the tests create: a node namespace and a server namespace.

Topology (all addresses private, all traffic inside these namespaces):

    node ns                       server ns
    eth0 (52:54:00:aa:bb:01) <--> s0 10.77.0.1/24   dnsmasq DHCP here (when asked)
    eth1                     <--> s1 10.88.0.1/24, fd88::1/64

networkd runs as a real child process: ``unshare --uts ip netns exec <node>
python -I -m talos_init.networkd`` (own UTS namespace, so sethostname does
not touch the host), with a NOTIFY_SOCKET owned by the test.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
NODE_MAC = "52:54:00:aa:bb:01"
WAIT = 60.0  # generous: two cores shared by six engineers


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True).stdout


def ipj(ns: str, *argv: str) -> Any:
    return json.loads(sh("ip", "-n", ns, "-j", *argv) or "[]")


def kernel_supports(kind: str) -> bool:
    """Whether this kernel can create links of `kind` (probed in a scratch namespace)."""
    if os.geteuid() != 0:
        return False  # the tests that need it skip for want of root anyway
    name = f"nwdprobe{os.getpid()}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
        args = (
            ["link", "p0", "name", "p0.5", "type", "vlan", "id", "5"]
            if kind == "vlan"
            else ["name", "b0", "type", "bond"]
        )
        return (
            subprocess.run(
                ["ip", "-n", name, "link", "add", *args], capture_output=True, check=False
            ).returncode
            == 0
        )
    finally:
        sh("ip", "netns", "del", name, check=False)


@dataclass
class Topology:
    node: str
    server: str

    def addresses(self, dev: str) -> set[str]:
        out = set()
        for link in ipj(self.node, "addr", "show", "dev", dev):
            for a in link.get("addr_info", []):
                if a.get("scope") == "global":
                    out.add(f"{a['local']}/{a['prefixlen']}")
        return out

    def routes(self, *argv: str) -> list[dict[str, Any]]:
        return ipj(self.node, *argv, "route", "show", "table", "main")

    def link(self, dev: str) -> dict[str, Any]:
        return ipj(self.node, "-d", "link", "show", "dev", dev)[0]

    def settled(self) -> bool:
        """No change of the kernel's own is pending: up links are operationally up, no address is in DAD."""
        for link in ipj(self.node, "addr", "show"):
            if "UP" in link["flags"] and link["ifname"] != "lo" and link.get("operstate") != "UP":
                return False
            if any(a.get("tentative") for a in link.get("addr_info", [])):
                return False
        return True

    def snapshot(self) -> Any:
        """Everything networkd may change, for before/after comparisons."""
        return {
            "links": ipj(self.node, "-d", "link", "show"),
            "addrs": ipj(self.node, "addr", "show"),
            "routes4": ipj(self.node, "-4", "route", "show", "table", "all"),
            "routes6": ipj(self.node, "-6", "route", "show", "table", "all"),
        }


@pytest.fixture
def netns() -> Iterator[Callable[[str], str]]:
    """Factory for network namespaces; every one is deleted at the end, whatever happened."""
    created: list[str] = []

    def make(tag: str) -> str:
        name = f"nwd{os.getpid()}{tag}"
        sh("ip", "netns", "add", name)
        created.append(name)
        return name

    yield make
    for name in reversed(created):
        sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def topo(netns: Callable[[str], str]) -> Topology:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    node, server = netns("n"), netns("s")
    sh(
        "ip",
        "link",
        "add",
        "eth0",
        "address",
        NODE_MAC,
        "netns",
        node,
        "type",
        "veth",
        "peer",
        "name",
        "s0",
        "netns",
        server,
    )
    sh(
        "ip",
        "link",
        "add",
        "eth1",
        "netns",
        node,
        "type",
        "veth",
        "peer",
        "name",
        "s1",
        "netns",
        server,
    )
    sh("ip", "-n", server, "addr", "add", "10.77.0.1/24", "dev", "s0")
    sh("ip", "-n", server, "addr", "add", "10.88.0.1/24", "dev", "s1")
    sh("ip", "-n", server, "addr", "add", "fd88::1/64", "dev", "s1", "nodad")
    for dev in ("lo", "s0", "s1"):
        sh("ip", "-n", server, "link", "set", dev, "up")
    return Topology(node, server)


class Dnsmasq:
    def __init__(
        self,
        topo: Topology,
        tmp: Path,
        t1: int,
        t2: int,
        pool: str,
        name: str,
        extra: list[str],
        interface: str = "s0",
    ):
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                topo.server,
                "/usr/sbin/dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                f"--interface={interface}",
                "--bind-interfaces",
                "--log-dhcp",
                "--pid-file=",
                "--dhcp-authoritative",  # NAK what it does not know, as a network's only server does
                f"--dhcp-leasefile={tmp / (name + '.leases')}",
                f"--dhcp-range={pool},255.255.255.0,2m",  # 2m is dnsmasq's minimum lease
                f"--dhcp-option=option:T1,{t1}",
                f"--dhcp-option=option:T2,{t2}",
                f"--dhcp-option=option:router,{pool.split(',')[0].rsplit('.', 1)[0]}.1",
                "--dhcp-option=option:dns-server,10.77.0.53",
                "--dhcp-option=option:domain-name,dhcp.test",
                "--dhcp-option=option:mtu,1450",
                f"--dhcp-host={NODE_MAC},dhcp-node",
                *extra,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def start_dnsmasq(topo: Topology, tmp_path: Path) -> Iterator[Callable[..., Dnsmasq]]:
    started: list[Dnsmasq] = []

    def start(
        t1: int = 4,
        t2: int = 100,
        pool: str = "10.77.0.50,10.77.0.99",
        extra: list[str] = (),
        interface: str = "s0",
    ) -> Dnsmasq:
        name = f"dnsmasq{len(started)}"
        started.append(Dnsmasq(topo, tmp_path, t1, t2, pool, name, list(extra), interface))
        return started[-1]

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def dnsmasq(start_dnsmasq: Callable[..., Dnsmasq]) -> Dnsmasq:
    """dnsmasq serving eth0, with T1 at 4 s so a renewal happens within a test."""
    return start_dnsmasq()


class Networkd:
    """networkd as a child process, with its JSON log events and sd_notify messages collected."""

    def __init__(
        self, topo: Topology, tmp: Path, cmdline: str, link_timeout: float, caps: list[str] | None
    ):
        self.topo = topo
        self.root = tmp / "root"
        (self.root / "proc").mkdir(parents=True, exist_ok=True)
        (self.root / "proc/cmdline").write_text(cmdline + "\n")
        self.config_path = self.root / "run/talos/config.json"
        self.notify_path = tmp / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.notify_path))
        self.sock.settimeout(0.2)
        self.events: list[dict[str, Any]] = []
        self.notifications: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify_path), PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [
                "unshare",
                "--uts",
                "ip",
                "netns",
                "exec",
                topo.node,
                # Only these capabilities (as the supervisor would leave them), when given.
                *(
                    [
                        "setpriv",
                        f"--bounding-set=-all,{','.join('+' + c for c in caps)}",
                        "--no-new-privs",
                    ]
                    if caps is not None
                    else []
                ),
                sys.executable,
                "-I",
                "-m",
                "talos_init.networkd",
                "--root",
                str(self.root),
                "--link-timeout",
                str(link_timeout),
                "--json-logs",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _drain(self, timeout: float) -> None:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = ""
        while line is not None:
            if line:
                self.output.append(line)
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass  # a pyroute2 warning or a traceback: kept in output for the failure message
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
        try:
            while True:
                self.notifications.append(self.sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            pass

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = predicate()
            if got:
                return got
            self._drain(0.1)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; networkd said:\n"
            + "".join(self.output[-60:])
        )

    def find(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    def wait_event(
        self, event: str, after: int = 0, timeout: float = WAIT, **match: Any
    ) -> dict[str, Any]:
        """The first `event` with fields `match` logged after the first `after` events."""

        def hit() -> dict[str, Any] | None:
            return next(
                (
                    e
                    for e in self.events[after:]
                    if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
                ),
                None,
            )

        return self.wait(hit, f"event {event} {match}", timeout)

    def wait_notify(self, text: str, timeout: float = WAIT) -> str:
        return self.wait(
            lambda: next((n for n in self.notifications if text in n), None),
            f"sd_notify {text!r}",
            timeout,
        )

    def wait_applied(self, generation: int, timeout: float = WAIT) -> dict[str, Any]:
        """The last 'applied' event of a config generation, once its wait for links is over."""
        return self.wait_event("applied", timeout=timeout, generation=generation, settled=True)

    def write_config(self, network: dict[str, Any]) -> None:
        doc = {"version": "v1alpha1", "machine": {"network": network}, "cluster": {}}
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.chmod(0o600)
        tmp.rename(self.config_path)  # the way userdata writes it: atomically

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)  # unshare and ip netns exec both exec: this is networkd

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._drain(0.1)
        self.sock.close()
        return self.proc.returncode


@pytest.fixture
def networkd(topo: Topology, tmp_path: Path) -> Iterator[Callable[..., Networkd]]:
    started: list[Networkd] = []

    def start(
        cmdline: str = "", link_timeout: float = 3.0, caps: list[str] | None = None
    ) -> Networkd:
        n = Networkd(topo, tmp_path, cmdline, link_timeout, caps)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()
