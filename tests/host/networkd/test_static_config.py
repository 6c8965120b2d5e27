"""machine.network from /run/talos/config.json applied through real netlink in a namespace."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from tests.host.networkd.conftest import NODE_MAC, kernel_supports

pytestmark = pytest.mark.host

STATIC = {
    "hostname": "node-1",
    "nameservers": ["10.88.0.53", "fd88::53"],
    "searchDomains": ["cluster.test"],
    "extraHostEntries": [{"ip": "10.88.0.5", "aliases": ["registry.local"]}],
    "interfaces": [
        {
            "interface": "eth1",
            "mtu": 1400,
            "addresses": ["10.88.0.10/24", "fd88::10/64"],
            "routes": [
                {"network": "10.200.0.0/16", "gateway": "10.88.0.1", "metric": 50},
                {"network": "0.0.0.0/0", "gateway": "10.88.0.1"},
                {"network": "10.210.0.0/16", "mtu": 1300},  # on-link: no gateway
                {"network": "fd99::/64", "gateway": "fd88::1", "metric": 7},
            ],
        }
    ],
}


def _routes(topo, family):
    return {
        (r["dst"], r.get("gateway"), r["dev"], r.get("metric"))
        for r in topo.routes(family)
        if r.get("protocol") == "static"
    }


def test_static_addresses_routes_mtu_and_files(topo, networkd):
    """IPv4 and IPv6 addresses, routes with metrics, MTU, DNS, hostname and hosts entries are applied."""
    n = networkd(cmdline="ip=off")
    n.write_config(STATIC)
    result = n.wait_applied(1)
    assert result["errors"] == 0
    assert topo.addresses("eth1") == {"10.88.0.10/24", "fd88::10/64"}
    assert topo.link("eth1")["mtu"] == 1400
    assert _routes(topo, "-4") == {
        ("10.200.0.0/16", "10.88.0.1", "eth1", 50),
        ("default", "10.88.0.1", "eth1", 1024),
        ("10.210.0.0/16", None, "eth1", 1024),
    }
    assert _routes(topo, "-6") == {("fd99::/64", "fd88::1", "eth1", 7)}
    assert [r["metrics"] for r in topo.routes("-4") if r["dst"] == "10.210.0.0/16"] == [
        [{"mtu": 1300}]
    ]
    assert (n.root / "etc/resolv.conf").read_text().splitlines()[1:] == [
        "nameserver 10.88.0.53",
        "nameserver fd88::53",
        "search cluster.test",
    ]
    hosts = (n.root / "etc/hosts").read_text()
    assert "10.88.0.10\tnode-1" in hosts and "10.88.0.5\tregistry.local" in hosts
    assert (n.root / "etc/hostname").read_text() == "node-1\n"


def test_same_config_twice_changes_nothing(topo, networkd):
    """Re-applying the same config (SIGHUP) makes no netlink change: the full dumps are identical."""
    n = networkd(cmdline="ip=off")
    n.write_config(STATIC)
    first = n.wait_applied(1)
    assert first["errors"] == 0
    n.wait(topo.settled, "the kernel to finish operstate and DAD changes of its own")
    before = topo.snapshot()
    files = {
        p: (n.root / p).stat().st_mtime_ns for p in ("etc/resolv.conf", "etc/hosts", "etc/hostname")
    }
    n.signal(signal.SIGHUP)
    second = n.wait_applied(2)
    assert second["changes"] == 0
    changes_after_first = [
        e for e in n.events[n.events.index(first) + 1 :] if e["event"] == "netlink_change"
    ]
    assert changes_after_first == []
    assert topo.snapshot() == before
    assert {p: (n.root / p).stat().st_mtime_ns for p in files} == files


def test_changed_config_applies_only_the_difference(topo, networkd):
    """A new config removes what the old one added and no longer wants, and adds only what is new."""
    n = networkd(cmdline="ip=off")
    n.write_config(STATIC)
    n.wait_applied(1)
    changed = {
        **STATIC,
        "interfaces": [
            {
                **STATIC["interfaces"][0],
                "addresses": ["10.88.0.11/24", "fd88::10/96"],
                "routes": [{"network": "10.200.0.0/16", "gateway": "10.88.0.1", "metric": 50}],
            }
        ],
    }
    mark = len(n.events)
    n.write_config(changed)
    n.wait_applied(2)
    changes = sorted(e["change"] for e in n.events[mark:] if e["event"] == "netlink_change")
    assert (
        changes
        == sorted(
            [
                "remove address 10.88.0.10/24 from eth1",
                "add address 10.88.0.11/24 to eth1",
                "remove address fd88::10/64 from eth1",
                "add address fd88::10/96 to eth1",  # same IPv6 address, new prefix: after the old one is gone
                "remove route 0.0.0.0/0 via 10.88.0.1 metric 1024",
                "remove route 10.210.0.0/16 via None metric 1024",
                "remove route fd99::/64 via fd88::1 metric 7",
            ]
        )
    )  # 10.200.0.0/16 stays: the new address is added before the old one goes, so no route is flushed
    assert topo.addresses("eth1") == {"10.88.0.11/24", "fd88::10/96"}
    assert _routes(topo, "-4") == {("10.200.0.0/16", "10.88.0.1", "eth1", 50)}
    assert n.find("apply_error") == []


def test_bad_config_names_each_field_and_applies_the_rest(topo, networkd):
    """A bad address, an unknown link and an unreachable gateway are errors by path; the rest is applied."""
    n = networkd(cmdline="ip=off", link_timeout=2)
    n.write_config(
        {
            "interfaces": [
                {
                    "interface": "eth1",
                    "addresses": ["10.88.0.10/24", "10.88.0.300/24"],
                    "routes": [
                        {"network": "10.201.0.0/16", "gateway": "10.99.0.1"},
                        {"network": "10.200.0.0/16", "gateway": "10.88.0.1", "metric": 50},
                    ],
                },
                {"interface": "eth7", "addresses": ["10.66.0.1/24"]},
            ]
        }
    )
    result = n.wait_applied(1)
    assert result["errors"] == 2
    fields = {e["field"]: e for e in n.events if e["event"] in ("config_error", "apply_error")}
    assert "10.88.0.300/24" in fields["machine.network.interfaces[0].addresses[1]"]["error"]
    assert "eth7" in fields["machine.network.interfaces[1].interface"]["error"]
    assert "not reachable" in fields["machine.network.interfaces[0].routes[0].gateway"]["error"]
    assert topo.addresses("eth1") == {"10.88.0.10/24"}
    assert _routes(topo, "-4") == {("10.200.0.0/16", "10.88.0.1", "eth1", 50)}
    assert n.proc.poll() is None
    status = json.loads((n.root / "run/talos/networkd/status.json").read_text())
    assert {e["field"] for e in status["errors"]} == {
        "machine.network.interfaces[0].addresses[1]",
        "machine.network.interfaces[1].interface",
        "machine.network.interfaces[0].routes[0].gateway",
    }
    assert {lk["name"] for lk in status["links"]} == {"lo", "eth0", "eth1"}


def test_link_that_appears_later_is_configured_from_its_event(topo, networkd):
    """A configured link missing at first is configured when its RTM_NEWLINK arrives, selected by MAC."""
    n = networkd(cmdline="ip=off", link_timeout=30)
    n.write_config(
        {
            "interfaces": [
                {
                    "deviceSelector": {"hardwareAddr": "52:54:00:aa:bb:07"},
                    "addresses": ["10.89.0.10/24"],
                }
            ]
        }
    )
    n.wait_event("config_loaded", generation=1)
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            "late0",
            "address",
            "52:54:00:aa:bb:07",
            "netns",
            topo.node,
            "type",
            "veth",
            "peer",
            "name",
            "s2",
            "netns",
            topo.server,
        ],
        check=True,
    )
    n.wait_event("link_added", link="late0")
    n.wait(lambda: topo.addresses("late0") == {"10.89.0.10/24"}, "late0 to get its address")
    assert n.find("link_wait_timeout") == []


def test_ip_cmdline_static_without_dhcp(topo, dnsmasq, networkd):
    """ip=<addr>::<gw>:<mask>:<host>:eth1:off:<dns> configures eth1 statically, is ready, and runs no DHCP."""
    n = networkd(cmdline="ip=10.88.0.20::10.88.0.1:255.255.255.0:ipnode:eth1:off:10.88.0.53")
    n.wait_notify("READY=1")
    assert topo.addresses("eth1") == {"10.88.0.20/24"}
    assert _routes(topo, "-4") == {("default", "10.88.0.1", "eth1", 1024)}
    assert (n.root / "etc/hostname").read_text() == "ipnode\n"
    assert "nameserver 10.88.0.53" in (n.root / "etc/resolv.conf").read_text()
    assert n.find("dhcp_start") == []
    assert topo.addresses("eth0") == set()


def test_config_switches_a_dhcp_link_to_static(topo, dnsmasq, networkd):
    """The early DHCP lease on eth0 is released and replaced when the config makes eth0 static."""
    n = networkd()
    lease = n.wait_event("dhcp_bound", link="eth0")["address"]
    n.write_config(
        {
            "interfaces": [
                {"deviceSelector": {"hardwareAddr": NODE_MAC}, "addresses": ["10.77.0.5/24"]}
            ]
        }
    )
    n.wait_applied(1)
    n.wait(lambda: "DHCPRELEASE(s0)" in dnsmasq.log(), "the early lease to be released")
    assert topo.addresses("eth0") == {"10.77.0.5/24"} and lease != "10.77.0.5/24"
    assert not [r for r in topo.routes("-4") if r.get("protocol") == "dhcp"]


@pytest.mark.skipif(not kernel_supports("vlan"), reason="this kernel has no 802.1q support (8021q)")
def test_vlan_sub_interface(topo, networkd):
    """A VLAN in the config becomes <parent>.<id> with its own address and MTU."""
    n = networkd(cmdline="ip=off")
    n.write_config(
        {
            "interfaces": [
                {
                    "interface": "eth1",
                    "addresses": ["10.88.0.10/24"],
                    "vlans": [{"vlanId": 42, "addresses": ["10.42.0.10/24"], "mtu": 1400}],
                }
            ]
        }
    )
    assert n.wait_applied(1)["errors"] == 0
    link = topo.link("eth1.42")
    assert link["linkinfo"]["info_data"]["id"] == 42 and link["mtu"] == 1400
    assert topo.addresses("eth1.42") == {"10.42.0.10/24"}


@pytest.mark.skipif(
    kernel_supports("vlan"), reason="this kernel supports VLANs: covered by the test above"
)
def test_vlan_unsupported_by_kernel_is_a_named_error(topo, networkd):
    """Where the kernel cannot make VLANs, the error names the VLAN's field and the parent is still set up."""
    n = networkd(cmdline="ip=off")
    n.write_config(
        {
            "interfaces": [
                {
                    "interface": "eth1",
                    "addresses": ["10.88.0.10/24"],
                    "vlans": [{"vlanId": 42, "addresses": ["10.42.0.10/24"]}],
                }
            ]
        }
    )
    assert n.wait_applied(1)["errors"] == 1
    err = n.wait_event("apply_error", field="machine.network.interfaces[0].vlans[0]")
    assert "cannot create vlan eth1.42" in err["error"]
    assert topo.addresses("eth1") == {"10.88.0.10/24"}


@pytest.mark.skipif(not kernel_supports("bond"), reason="this kernel has no bonding support")
def test_bond_of_two_links(topo, networkd):
    """A bond enslaves its interfaces and carries the address."""
    n = networkd(cmdline="ip=off")
    n.write_config(
        {
            "interfaces": [
                {
                    "interface": "bond0",
                    "addresses": ["10.88.0.10/24"],
                    "bond": {
                        "interfaces": ["eth0", "eth1"],
                        "mode": "active-backup",
                        "miimon": 100,
                    },
                }
            ]
        }
    )
    assert n.wait_applied(1)["errors"] == 0
    bond = topo.link("bond0")
    assert (
        bond["linkinfo"]["info_kind"] == "bond"
        and bond["linkinfo"]["info_data"]["mode"] == "active-backup"
    )
    assert topo.link("eth0")["master"] == "bond0" and topo.link("eth1")["master"] == "bond0"
    assert topo.addresses("bond0") == {"10.88.0.10/24"}


def test_unreadable_config_is_reported_and_the_next_good_one_applies(topo, networkd):
    """A config.json that is not JSON is an error; networkd stays up and applies the next good one."""
    n = networkd(cmdline="ip=off")
    n.config_path.parent.mkdir(parents=True, exist_ok=True)
    n.config_path.write_text('{"machine": {"network": ')
    err = n.wait_event("config_unreadable")
    assert str(n.config_path) == err["path"]
    assert n.proc.poll() is None
    n.write_config({"interfaces": [{"interface": "eth1", "addresses": ["10.88.0.10/24"]}]})
    assert n.wait_applied(1)["errors"] == 0
    assert topo.addresses("eth1") == {"10.88.0.10/24"}


def test_config_dns_and_hostname_override_dhcp(topo, dnsmasq, networkd):
    """DHCP's DNS servers and hostname are used until the config names its own."""
    n = networkd()
    n.wait_event("dhcp_bound", link="eth0")
    n.wait(
        lambda: "nameserver 10.77.0.53" in (n.root / "etc/resolv.conf").read_text(), "DHCP's DNS"
    )
    n.write_config({"hostname": "cfg-node", "nameservers": ["10.88.0.53"]})
    n.wait_applied(1)
    resolv = (n.root / "etc/resolv.conf").read_text()
    assert "nameserver 10.88.0.53" in resolv and "10.77.0.53" not in resolv
    assert (n.root / "etc/hostname").read_text() == "cfg-node\n"
    assert n.find("dhcp_stop") == []  # eth0 is not named by the config: its lease is kept


def test_config_selecting_by_pattern_replaces_the_ip_cmdline_settings(topo, networkd):
    """ip= names eth0, the config selects it by driver and MAC pattern: only the config's address remains."""
    n = networkd(cmdline="ip=10.77.0.20:::255.255.255.0::eth0:off")
    n.wait_notify("READY=1")
    assert topo.addresses("eth0") == {"10.77.0.20/24"}
    n.write_config(
        {
            "interfaces": [
                {
                    "deviceSelector": {"driver": "veth", "hardwareAddr": "52:54:00:aa:bb:*"},
                    "addresses": ["10.77.0.21/24"],
                }
            ]
        }
    )
    n.wait_applied(1)
    assert topo.addresses("eth0") == {"10.77.0.21/24"}
