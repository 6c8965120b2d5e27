"""The network plan from ip= and machine.network, with errors named by field path."""

from __future__ import annotations

import ipaddress

from talos_init import cmdline
from talos_init.networkd import model


def _errors(plan: model.NetworkPlan, severity: str = "error") -> dict[str, str]:
    return {e.path: e.message for e in plan.errors if e.severity == severity}


def test_no_ip_means_dhcp_on_every_link_with_carrier():
    """Without ip=, the early plan is DHCPv4 on links with carrier, and talos.hostname is kept."""
    plan = model.from_cmdline(cmdline.parse("talos.hostname=n1"))
    assert plan.dhcp_on_carrier and plan.links == [] and plan.hostname == "n1"


def test_ip_static_becomes_a_link_with_address_gateway_and_dns():
    """ip=<addr>::<gw>:<mask>:<host>:<dev>:off:<dns> gives one static link and a default route."""
    plan = model.from_cmdline(
        cmdline.parse("ip=10.0.0.5::10.0.0.1:255.255.255.0:h1:eth1:off:10.0.0.53")
    )
    assert not plan.dhcp_on_carrier and plan.hostname == "h1"
    [link] = plan.links
    assert link.selector.name == "eth1" and not link.dhcp
    assert [a for a, _ in link.addresses] == [ipaddress.ip_interface("10.0.0.5/24")]
    [route] = link.routes
    assert str(route.network) == "0.0.0.0/0" and str(route.gateway) == "10.0.0.1"
    assert plan.nameservers == [ipaddress.ip_address("10.0.0.53")]


def test_ip_off_and_device_dhcp():
    """ip=off configures nothing early; ip=eth1:dhcp runs DHCP on eth1 only."""
    off = model.from_cmdline(cmdline.parse("ip=off"))
    assert off.links == [] and not off.dhcp_on_carrier
    dev = model.from_cmdline(cmdline.parse("ip=eth1:dhcp"))
    assert [(lk.selector.name, lk.dhcp) for lk in dev.links] == [
        ("eth1", True)
    ] and not dev.dhcp_on_carrier


def test_ip_dhcp6_is_reported_unsupported():
    """ip=dhcp6 is named as unsupported rather than silently ignored."""
    plan = model.from_cmdline(cmdline.parse("ip=eth0:dhcp6"))
    assert "cmdline ip[0]" in _errors(plan, "unsupported")


def test_full_config_is_read():
    """Interfaces by name and MAC, addresses, routes with metric, MTU, VLANs, bond, DNS, hosts, hostname."""
    plan = model.from_config(
        {
            "machine": {
                "network": {
                    "hostname": "Node-1",
                    "nameservers": ["1.1.1.1", "2606:4700::1111"],
                    "searchDomains": ["example.com"],
                    "extraHostEntries": [{"ip": "10.0.0.9", "aliases": ["reg", "reg.local"]}],
                    "interfaces": [
                        {
                            "interface": "eth0",
                            "dhcp": True,
                            "mtu": 9000,
                            "vlans": [
                                {
                                    "vlanId": 10,
                                    "addresses": ["10.10.0.2/24"],
                                    "mtu": 1500,
                                    "routes": [{"network": "10.11.0.0/16", "gateway": "10.10.0.1"}],
                                }
                            ],
                        },
                        {
                            "deviceSelector": {"hardwareAddr": "52:54:00:AA:BB:CC"},
                            "addresses": ["192.168.1.2/24", "fd00::2/64"],
                            "routes": [
                                {"network": "0.0.0.0/0", "gateway": "192.168.1.1", "metric": 100},
                                {"gateway": "fd00::1"},
                            ],
                        },
                        {
                            "interface": "bond0",
                            "addresses": ["10.1.0.2/24"],
                            "bond": {
                                "interfaces": ["eth2", "eth3"],
                                "mode": "802.3ad",
                                "lacpRate": "fast",
                                "miimon": 100,
                                "xmitHashPolicy": "layer3+4",
                            },
                        },
                    ],
                }
            }
        }
    )
    assert _errors(plan) == {}
    assert plan.hostname == "node-1"
    assert [str(n) for n in plan.nameservers] == ["1.1.1.1", "2606:4700::1111"]
    assert plan.search_domains == ["example.com"] and plan.extra_hosts[0].aliases == [
        "reg",
        "reg.local",
    ]
    eth0, vlan, bymac, bond = plan.links
    assert eth0.dhcp and eth0.mtu == 9000
    assert (vlan.kind, vlan.selector.name, vlan.parent.name, vlan.vlan_id, vlan.mtu) == (
        "vlan",
        "eth0.10",
        "eth0",
        10,
        1500,
    )
    assert vlan.routes[0].path == "machine.network.interfaces[0].vlans[0].routes[0]"
    assert bymac.selector.hardware_addr == "52:54:00:aa:bb:cc"
    assert [(str(r.network), str(r.gateway), r.metric) for r in bymac.routes] == [
        ("0.0.0.0/0", "192.168.1.1", 100),
        ("::/0", "fd00::1", model.DEFAULT_STATIC_METRIC),
    ]
    assert bond.kind == "bond" and bond.bond.mode == 4
    assert bond.bond.options == {
        "bond_miimon": 100,
        "bond_ad_lacp_rate": 1,
        "bond_xmit_hash_policy": 1,
    }
    assert [s.name for s in bond.bond.slaves] == ["eth2", "eth3"]


def test_bad_values_are_named_by_path_and_the_rest_is_kept():
    """Each bad value is one error at its path; the good siblings stay in the plan."""
    plan = model.from_config(
        {
            "machine": {
                "network": {
                    "hostname": "not_valid!",
                    "nameservers": ["1.1.1.1", "dns.example"],
                    "interfaces": [
                        {
                            "interface": "eth0",
                            "addresses": ["10.0.0.2/24", "10.0.0.300/24", "10.0.0.3"],
                            "routes": [
                                {"network": "10.5.0.0/16", "gateway": "nope"},
                                {"network": "10.6.0.0/16", "gateway": "fd00::1"},
                                {"network": "10.7.0.0/16", "gateway": "10.0.0.1", "metric": -1},
                                {"network": "10.8.0.0/16", "gateway": "10.0.0.1"},
                            ],
                            "mtu": 20,
                            "wat": 1,
                        },
                        {"deviceSelector": {"hardwareAddr": "zz"}},
                        {"interface": "bond0", "bond": {"mode": "fastest", "interfaces": []}},
                        {"addresses": ["10.0.0.9/24"]},
                        {
                            "interface": "eth1",
                            "vlans": [{"vlanId": 5000}],
                            "vip": {"ip": "10.0.0.100"},
                        },
                    ],
                }
            }
        }
    )
    p = "machine.network.interfaces"
    assert set(_errors(plan)) == {
        "machine.network.hostname",
        "machine.network.nameservers[1]",
        f"{p}[0].addresses[1]",
        f"{p}[0].addresses[2]",
        f"{p}[0].routes[0].gateway",
        f"{p}[0].routes[1].gateway",
        f"{p}[0].routes[2].metric",
        f"{p}[0].mtu",
        f"{p}[0].wat",
        f"{p}[1].deviceSelector.hardwareAddr",
        f"{p}[2].bond.mode",
        f"{p}[2].bond.interfaces",
        f"{p}[3]",
        f"{p}[4].vlans[0].vlanId",
    }
    assert "needs a prefix length" in _errors(plan)[f"{p}[0].addresses[2]"]
    assert "IPv6 but network 10.6.0.0/16 is IPv4" in _errors(plan)[f"{p}[0].routes[1].gateway"]
    assert set(_errors(plan, "unsupported")) == {f"{p}[4].vip"}
    eth0 = plan.links[0]
    assert [str(a) for a, _ in eth0.addresses] == ["10.0.0.2/24"]
    assert [str(r.network) for r in eth0.routes] == ["10.8.0.0/16"]
    assert [str(n) for n in plan.nameservers] == ["1.1.1.1"]


def test_merge_config_wins_per_link_and_setting():
    """The config replaces the early settings of the links it names; other early links and DHCP stay."""
    early = model.from_cmdline(
        cmdline.parse(
            "talos.hostname=early ip=10.0.0.5::10.0.0.1:24::eth1:off:10.0.0.53 ip=10.1.0.5:::24::eth2:off"
        )
    )
    config = model.from_config(
        {
            "machine": {
                "network": {
                    "nameservers": ["9.9.9.9"],
                    "interfaces": [{"interface": "eth1", "dhcp": True}],
                }
            }
        }
    )
    merged = model.merge(early, config)
    assert merged.hostname == "early" and [str(n) for n in merged.nameservers] == ["9.9.9.9"]
    by_name = {lk.selector.name: lk for lk in merged.links}
    assert by_name["eth1"].dhcp and by_name["eth1"].addresses == []
    assert [str(a) for a, _ in by_name["eth2"].addresses] == ["10.1.0.5/24"]


def test_device_selector_fields_and_unsupported_keys():
    """A deviceSelector keeps its patterns; keys the node cannot match are reported, an empty one is an error."""
    plan = model.from_config(
        {
            "machine": {
                "network": {
                    "interfaces": [
                        {
                            "deviceSelector": {
                                "driver": "virtio*",
                                "physical": True,
                                "pciID": "1AF4:1000",
                            },
                            "dhcp": True,
                        },
                        {"deviceSelector": {}},
                    ]
                }
            }
        }
    )
    sel = plan.links[0].selector
    assert (sel.driver, sel.physical, sel.hardware_addr) == ("virtio*", True, None)
    assert "machine.network.interfaces[0].deviceSelector.pciID" in _errors(plan, "unsupported")
    assert "machine.network.interfaces[1].deviceSelector" in _errors(plan)


def test_dhcp_route_metric_and_unsupported_dhcp_options():
    """dhcpOptions.routeMetric is kept for the link and its VLANs; ipv6 and duidv6 are reported."""
    plan = model.from_config(
        {
            "machine": {
                "network": {
                    "interfaces": [
                        {
                            "interface": "eth0",
                            "dhcp": True,
                            "dhcpOptions": {"routeMetric": 100, "ipv6": True},
                            "vlans": [
                                {"vlanId": 7, "dhcp": True, "dhcpOptions": {"routeMetric": 200}}
                            ],
                        },
                    ]
                }
            }
        }
    )
    assert [lk.dhcp_metric for lk in plan.links] == [100, 200]
    assert set(_errors(plan, "unsupported")) == {"machine.network.interfaces[0].dhcpOptions.ipv6"}
