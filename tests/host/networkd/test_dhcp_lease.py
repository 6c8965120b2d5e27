"""DHCPv4 against a real dnsmasq in a namespace: lease, renewal at T1, link flap, release."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.host.networkd.conftest import ROOT

pytestmark = pytest.mark.host


def test_lease_gives_address_route_dns_hostname_and_readiness(topo, dnsmasq, networkd):
    """With no ip= and no config, a lease on the carrier link configures the node (MTU too) and makes it ready."""
    n = networkd()
    n.wait_notify("READY=1")
    bound = n.wait_event("dhcp_bound", link="eth0")
    address = bound["address"]
    assert address.startswith("10.77.0.") and address in topo.addresses("eth0")
    default = [r for r in topo.routes("-4") if r["dst"] == "default"]
    assert default == [
        {
            "dst": "default",
            "gateway": "10.77.0.1",
            "dev": "eth0",
            "protocol": "dhcp",
            "metric": 1024,
            "flags": [],
        }
    ]
    assert topo.link("eth0")["mtu"] == 1450
    resolv = (n.root / "etc/resolv.conf").read_text()
    assert "nameserver 10.77.0.53" in resolv and "search dhcp.test" in resolv
    assert (n.root / "etc/hostname").read_text() == "dhcp-node\n"
    assert f"{address.split('/')[0]}\tdhcp-node" in (n.root / "etc/hosts").read_text()
    uts = subprocess.run(
        ["nsenter", "-t", str(n.proc.pid), "-u", "hostname"],
        capture_output=True,
        text=True,
        check=True,
    )
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


def test_lease_is_rebound_at_t2_when_the_server_ignores_renewals(topo, start_dnsmasq, networkd):
    """With unicast renewals dropped at the server, the client rebinds by broadcast at T2 and keeps its address."""
    dnsmasq = start_dnsmasq(t1=3, t2=8)
    n = networkd()
    bound = n.wait_event("dhcp_bound", link="eth0")
    # Renewals are unicast to the server's address; rebinding is broadcast and still gets through.
    subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            topo.server,
            "iptables",
            "-A",
            "INPUT",
            "-d",
            "10.77.0.1",
            "-p",
            "udp",
            "--dport",
            "67",
            "-j",
            "DROP",
        ],
        check=True,
    )
    mark = len(n.events)
    rebound = n.wait_event("dhcp_rebound", after=mark, link="eth0", timeout=40)
    assert rebound["address"] == bound["address"]
    assert not [e for e in n.events[mark:] if e["event"] == "dhcp_renewed"]
    assert "DHCPACK(s0)" in dnsmasq.log() and bound["address"] in topo.addresses("eth0")


def test_sigterm_while_waiting_for_carrier_exits_at_once(topo, networkd):
    """No DHCP server and no carrier: SIGTERM during the wait for links still stops networkd promptly."""
    subprocess.run(["ip", "-n", topo.server, "link", "set", "s0", "down"], check=True)
    subprocess.run(["ip", "-n", topo.server, "link", "set", "s1", "down"], check=True)
    n = networkd(link_timeout=600)
    n.wait_event("early_plan")
    n.signal(signal.SIGTERM)
    assert n.proc.wait(20) == 0
    n.wait_event("stopped")
    assert n.find("link_wait_timeout") == []


def test_works_with_only_the_capabilities_its_service_file_keeps(topo, dnsmasq, networkd):
    """With just the capabilities services/networkd.yaml keeps, DHCP, config and hostname all work."""
    service = yaml.safe_load((ROOT / "services/networkd.yaml").read_text())
    caps = service["confinement"]["capabilities"]["keep"]
    n = networkd(caps=caps)
    n.wait_notify("READY=1")
    bound = n.wait_event("dhcp_bound", link="eth0")
    n.write_config(
        {
            "hostname": "capped",
            "interfaces": [{"interface": "eth1", "addresses": ["10.88.0.10/24"]}],
        }
    )
    assert n.wait_applied(1)["errors"] == 0
    assert topo.addresses("eth1") == {"10.88.0.10/24"}
    assert bound["address"] in topo.addresses("eth0")
    uts = subprocess.run(
        ["nsenter", "-t", str(n.proc.pid), "-u", "hostname"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert uts.stdout.strip() == "capped"
    status = Path(f"/proc/{n.proc.pid}/status").read_text()
    assert "CapBnd:\t0000000000203000" in status  # net_admin(12), net_raw(13), sys_admin(21)
    n.signal(signal.SIGTERM)
    assert n.proc.wait(20) == 0
    n.wait(lambda: "DHCPRELEASE(s0)" in dnsmasq.log(), "the release, sent with CAP_NET_RAW only")


def test_nak_on_renewal_moves_the_node_to_a_new_lease(topo, start_dnsmasq, networkd):
    """A server that no longer knows the lease NAKs the renewal: the old address goes, a new lease comes."""
    first = start_dnsmasq()
    n = networkd()
    old = n.wait_event("dhcp_bound", link="eth0")["address"]
    first.stop()
    second = start_dnsmasq(pool="10.77.0.100,10.77.0.149")  # a new server with another pool
    mark = len(n.events)
    n.wait_event("dhcp_unbound", after=mark, link="eth0", timeout=30)
    new = n.wait_event("dhcp_bound", after=mark, link="eth0", timeout=30)["address"]
    assert "DHCPNAK(s0)" in second.log()
    assert new != old and int(new.split(".")[3].split("/")[0]) >= 100
    n.wait(lambda: topo.addresses("eth0") == {new}, "only the new address on eth0")
    assert n.proc.poll() is None


def test_classless_static_routes_replace_the_router_option(topo, start_dnsmasq, networkd):
    """Option 121 routes are installed (on-link ones too) and, as RFC 3442 says, the router option is not."""
    start_dnsmasq(
        extra=[
            "--dhcp-option=option:classless-static-route,"
            "10.99.0.0/16,10.77.0.1,10.98.0.0/24,0.0.0.0,0.0.0.0/0,10.77.0.254"
        ]
    )
    n = networkd()
    n.wait_notify("READY=1")
    routes = {
        (r["dst"], r.get("gateway")) for r in topo.routes("-4") if r.get("protocol") == "dhcp"
    }
    assert routes == {
        ("10.99.0.0/16", "10.77.0.1"),
        ("10.98.0.0/24", None),
        ("default", "10.77.0.254"),
    }


def test_two_dhcp_links_each_keep_a_default_route(topo, start_dnsmasq, networkd):
    """Leases on eth0 and eth1 both install their default route (same metric), with no error."""
    start_dnsmasq()
    start_dnsmasq(pool="10.88.0.50,10.88.0.99", interface="s1")
    n = networkd()
    n.wait_event("dhcp_bound", link="eth0")
    n.wait_event("dhcp_bound", link="eth1")

    def defaults():
        return {
            (r["gateway"], r["dev"], r["metric"])
            for r in topo.routes("-4")
            if r["dst"] == "default" and r.get("protocol") == "dhcp"
        }

    n.wait(lambda: len(defaults()) == 2, "a default route through each link")
    assert defaults() == {("10.77.0.1", "eth0", 1024), ("10.88.0.1", "eth1", 1024)}
    assert n.find("apply_error") == []
    # The routes can be in the kernel before networkd has logged them: wait for its log too.
    def logged_routes():
        found = [e for e in n.find("netlink_change") if e["change"].startswith("add route 0.0.0.0/0")]
        return found if len(found) == 2 else None

    routes = n.wait(logged_routes, "both default routes logged")
    n.wait_event("applied", after=n.events.index(routes[-1]))
    mark = len(n.events)
    n.signal(signal.SIGHUP)  # and it stays idempotent with two routes to one prefix
    n.wait_event("applied", after=mark)
    assert [e for e in n.events[mark:] if e["event"] == "netlink_change"] == []


BAD_REPLY = (
    # A BOOTREPLY with no DHCP message type (option 53): plain BOOTP, or a hostile host.
    bytes([2, 1, 6, 0])
    + bytes(4)
    + bytes(8)
    + bytes(16)
    + bytes.fromhex("525400aabb01")
    + bytes(10)
    + bytes(64 + 128)
    + bytes([99, 130, 83, 99, 255])
)


def test_a_malformed_reply_on_the_lan_does_not_stop_dhcp(topo, dnsmasq, networkd):
    """A broadcast BOOTREPLY without a message type is dropped; the lease is still renewed."""
    n = networkd()
    bound = n.wait_event("dhcp_bound", link="eth0")
    sender = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b's0')\n"
        "s.sendto(bytes.fromhex(sys.argv[1]), ('255.255.255.255', 68))\n"
    )
    mark = len(n.events)
    subprocess.run(
        ["ip", "netns", "exec", topo.server, sys.executable, "-c", sender, BAD_REPLY.hex()],
        check=True,
    )
    n.wait_event("dhcp_packet_ignored", after=mark, link="eth0")
    # T1 is 4 s: upstream pyroute2 would never renew again after that packet.
    renewed = n.wait_event("dhcp_renewed", after=mark, link="eth0", timeout=30)
    assert renewed["address"] == bound["address"]
    assert n.find("dhcp_client_died") == [] and n.proc.poll() is None


def test_link_set_down_on_the_node_comes_back_with_its_lease(topo, dnsmasq, networkd):
    """Someone sets eth0 down on the node: networkd sets it up again and DHCP re-binds the same address."""
    n = networkd()
    bound = n.wait_event("dhcp_bound", link="eth0")
    mark = len(n.events)
    subprocess.run(["ip", "-n", topo.node, "link", "set", "eth0", "down"], check=True)
    n.wait_event("netlink_change", after=mark, change="set eth0 up")
    again = n.wait_event("dhcp_bound", after=mark, link="eth0", timeout=40)
    assert again["address"] == bound["address"]
    n.wait(lambda: bound["address"] in topo.addresses("eth0"), "the address back on eth0")
    assert n.proc.poll() is None
