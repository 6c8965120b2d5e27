"""DHCPv4 against a real dnsmasq in a namespace: lease, renewal at T1, link flap, release."""

from __future__ import annotations

import signal
import subprocess

import pytest

pytestmark = pytest.mark.host


def test_lease_gives_address_route_dns_hostname_and_readiness(topo, dnsmasq, networkd):
    """With no ip= and no config, a lease on the carrier link configures the node and makes it ready."""
    n = networkd()
    n.wait_notify("READY=1")
    bound = n.wait_event("dhcp_bound", link="eth0")
    address = bound["address"]
    assert address.startswith("10.77.0.") and address in topo.addresses("eth0")
    default = [r for r in topo.routes("-4") if r["dst"] == "default"]
    assert default == [{"dst": "default", "gateway": "10.77.0.1", "dev": "eth0", "protocol": "dhcp",
                        "metric": 1024, "flags": []}]
    resolv = (n.root / "etc/resolv.conf").read_text()
    assert "nameserver 10.77.0.53" in resolv and "search dhcp.test" in resolv
    assert (n.root / "etc/hostname").read_text() == "dhcp-node\n"
    assert f"{address.split('/')[0]}\tdhcp-node" in (n.root / "etc/hosts").read_text()
    uts = subprocess.run(["nsenter", "-t", str(n.proc.pid), "-u", "hostname"], capture_output=True, text=True)
    assert uts.stdout.strip() == "dhcp-node"


def test_lease_is_renewed_at_t1(topo, dnsmasq, networkd):
    """dnsmasq sets T1 to 4 s: networkd renews by itself and keeps its address."""
    n = networkd()
    bound = n.wait_event("dhcp_bound", link="eth0")
    renewed = n.wait_event("dhcp_renewed", link="eth0", timeout=30)
    assert renewed["address"] == bound["address"] and renewed["t1"] == 4
    assert dnsmasq.log().count("DHCPACK(s0)") >= 2
    assert bound["address"] in topo.addresses("eth0")


def test_link_flap_pauses_and_restarts_dhcp(topo, dnsmasq, networkd):
    """Carrier loss pauses DHCP, carrier return re-requests the same lease, and networkd stays up."""
    n = networkd()
    bound = n.wait_event("dhcp_bound", link="eth0")
    mark = len(n.events)
    subprocess.run(["ip", "-n", topo.server, "link", "set", "s0", "down"], check=True)
    n.wait_event("link_carrier", after=mark, link="eth0", carrier=False)
    n.wait_event("dhcp_pause", after=mark, link="eth0")
    subprocess.run(["ip", "-n", topo.server, "link", "set", "s0", "up"], check=True)
    n.wait_event("link_carrier", after=mark, link="eth0", carrier=True)
    n.wait_event("dhcp_start", after=mark, link="eth0", state="init-reboot")
    again = n.wait_event("dhcp_bound", after=mark, link="eth0")
    assert again["address"] == bound["address"]
    assert n.proc.poll() is None
    assert bound["address"] in topo.addresses("eth0")


def test_sigterm_releases_the_lease_and_removes_it(topo, dnsmasq, networkd):
    """SIGTERM sends DHCPRELEASE, takes the address and route away, and exits 0."""
    n = networkd()
    bound = n.wait_event("dhcp_bound", link="eth0")
    n.signal(signal.SIGTERM)
    assert n.proc.wait(20) == 0
    n.wait(lambda: "DHCPRELEASE(s0)" in dnsmasq.log(), "dnsmasq to log the release")
    assert bound["address"] not in topo.addresses("eth0")
    assert not [r for r in topo.routes("-4") if r["dst"] == "default"]
