"""Rendering of resolv.conf and hosts, atomic writes, link selection and lease decoding."""

from __future__ import annotations

import ipaddress
import os
from typing import Any, ClassVar

from talos_init.networkd import files
from talos_init.networkd.dhcp import lease_info
from talos_init.networkd.links import Link, LinkTable
from talos_init.networkd.model import HostEntry, Selector


def test_resolv_conf_keeps_glibc_limits():
    """At most three nameservers and six search domains are written, in order."""
    ns = [ipaddress.ip_address(f"10.0.0.{i}") for i in range(1, 6)]
    text = files.render_resolv_conf(ns, [f"d{i}.test" for i in range(8)])
    assert text.splitlines()[1:] == [
        "nameserver 10.0.0.1",
        "nameserver 10.0.0.2",
        "nameserver 10.0.0.3",
        "search d0.test d1.test d2.test d3.test d4.test d5.test",
    ]


def test_hosts_maps_hostname_and_extra_entries():
    """The hostname (and its short form) maps to the node address; extra entries follow."""
    text = files.render_hosts(
        "n1.example.com",
        ipaddress.ip_address("10.0.0.2"),
        [HostEntry(ipaddress.ip_address("10.0.0.9"), ["reg", "reg.local"])],
    )
    assert "10.0.0.2\tn1.example.com n1" in text and "10.0.0.9\treg reg.local" in text
    assert "127.0.1.1\tn1" in files.render_hosts("n1", None, [])


def test_write_atomic_replaces_and_skips_identical(tmp_path):
    """A changed file is replaced by rename (new inode); identical content is not rewritten."""
    path = tmp_path / "etc/resolv.conf"
    assert files.write_atomic(path, "a\n")
    inode = os.stat(path).st_ino
    assert not files.write_atomic(path, "a\n")
    assert os.stat(path).st_ino == inode
    assert files.write_atomic(path, "b\n")
    assert path.read_text() == "b\n" and os.stat(path).st_ino != inode
    assert [p.name for p in path.parent.iterdir()] == ["resolv.conf"]


def _link(index, name, mac, kind=None, master=None):
    return Link(index, name, mac, kind, True, True, 1500, master, False)


def test_mac_selector_prefers_the_physical_link():
    """A VLAN or bond sharing a NIC's MAC is not what a hardwareAddr selector picks."""
    table = LinkTable()
    for link in (
        _link(5, "eth0.10", "52:54:00:00:00:01", "vlan"),
        _link(2, "eth0", "52:54:00:00:00:01"),
    ):
        table.by_index[link.index] = link
    assert table.find(Selector(hardware_addr="52:54:00:00:00:01")).name == "eth0"
    assert table.find(Selector(name="eth0.10")).index == 5
    assert table.find(Selector(name="eth9")) is None


def test_lease_info_from_an_ack():
    """DHCP options become typed values; the domain name leads the search list."""

    class FakeLease:  # the only attributes lease_info reads from pyroute2's Lease
        interface = "eth0"
        ip = "10.77.0.60"
        ack: ClassVar[dict[str, Any]] = {
            "options": {
                "subnet_mask": "255.255.255.0",
                "router": ["10.77.0.1"],
                "name_server": ["10.77.0.53"],
                "domain_name": "a.test",
                "domain_search": ["b.test"],
                "host_name": "n1",
                "server_id": "10.77.0.1",
                "interface_mtu": 1450,
                "lease_time": 120,
                "renewal_time": 60,
                "rebinding_time": 105,
            }
        }

    info = lease_info(FakeLease())
    assert str(info.address) == "10.77.0.60/24" and [str(r) for r in info.routers] == ["10.77.0.1"]
    assert info.search == ("a.test", "b.test") and info.hostname == "n1" and info.renewal_time == 60
    assert info.mtu == 1450


def test_bond_attributes_are_names_pyroute2_knows():
    """Every bond setting the model can produce maps to an IFLA_BOND_* attribute of the pyroute2 we ship."""
    from pyroute2.netlink.rtnl.ifinfmsg.plugins.bond import bond as bond_nla

    from talos_init.networkd import model
    from talos_init.networkd.apply import bond_attrs

    every = {attr: 1 for attr, _ in [*model.BOND_INTS.values(), *model.BOND_ENUMS.values()]}
    attrs = bond_attrs(model.Bond(mode=4, options={**every, "bond_use_carrier": 1}))
    known = {name for name, _ in bond_nla.nla_map}
    assert len(attrs) == len(model.BOND_INTS) + len(model.BOND_ENUMS) + 2
    assert {f"IFLA_{k.upper()}" for k in attrs} <= known


def test_classless_static_routes_are_decoded():
    """RFC 3442 encoding: width, significant octets, router (0.0.0.0 is on-link); a truncated tail is dropped."""
    from talos_init.networkd.dhcp import classless_routes

    data = [0, 10, 77, 0, 1, 16, 10, 99, 10, 77, 0, 1, 8, 10, 0, 0, 0, 0, 24, 10, 1]
    assert [(str(n), str(g) if g else None) for n, g in classless_routes(data)] == [
        ("0.0.0.0/0", "10.77.0.1"),
        ("10.99.0.0/16", "10.77.0.1"),
        ("10.0.0.0/8", None),
    ]
    assert classless_routes([33, 1, 2, 3, 4, 5]) == ()


def test_domain_search_wire_form_is_decoded_with_compression():
    """Option 119 as pyroute2 hands it over (octets): names, pointers to earlier tails followed."""
    from talos_init.networkd.dhcp import domain_list

    wire = b"\x03eng\x07example\x03com\x00" + b"\x05sales\xc0\x04"  # sales -> example.com
    assert domain_list(wire) == ["eng.example.com", "sales.example.com"]
    for bad in (b"\x05ab", b"\xc0", b"\xc0\x00", b"\x40abc\x00"):
        try:
            domain_list(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} decoded")


def test_dhcp_names_that_are_not_dns_names_are_dropped():
    """A newline, a space or an over-long label in options 12, 15 or 119 drops that name only."""
    from talos_init.networkd.dhcp import dns_name

    class FakeLease:
        interface = "eth0"
        ip = "10.77.0.60"
        ack: ClassVar[dict[str, Any]] = {"options": {
            "domain_name": "a.test\nnameserver 10.0.0.66",
            "domain_search": list(b"\x08bad name\x00\x04good\x00"),
            "host_name": "evil\n",
        }}

    info = lease_info(FakeLease())
    assert info.search == ("good",) and info.hostname is None
    assert dns_name("node.example.") == "node.example" and dns_name("x" * 64) is None
    assert dns_name(("a" * 63 + ".") * 4 + "a") is None  # 257 characters


def test_rendered_files_never_carry_a_second_line_from_one_value():
    """Values with whitespace or control characters are left out of resolv.conf and hosts."""
    text = files.render_resolv_conf([], ["ok.test", "x\nnameserver 10.0.0.66", "a b"])
    assert text.splitlines()[1:] == ["search ok.test"]
    hosts = files.render_hosts("evil\nx", None, [HostEntry(ipaddress.ip_address("10.0.0.5"),
                                                           ("ok", "bad\rname"))])
    assert "evil" not in hosts and "10.0.0.5\tok" in hosts.splitlines()
