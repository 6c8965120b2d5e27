"""Kernel command line parsing: good values typed, bad ones named, unknown ignored."""

import ipaddress

from talos_init import cmdline


def test_config_url_and_alias():
    """talos.userdata= is an alias of talos.config=."""
    assert cmdline.parse("talos.userdata=http://10.0.2.100/u.yaml").config_url == "http://10.0.2.100/u.yaml"
    assert cmdline.parse("talos.config=file:///c.yaml quiet").config_url == "file:///c.yaml"


def test_conflicting_config_params_are_reported():
    """Two different URLs: talos.config wins and the conflict is named."""
    c = cmdline.parse("talos.config=http://a/x talos.userdata=http://b/y")
    assert c.config_url == "http://a/x"
    assert [e.param for e in c.errors] == ["talos.config"]


def test_unknown_params_are_ignored():
    """Parameters owned by the kernel or others are not errors."""
    c = cmdline.parse("root=/dev/sda quiet loglevel=3 init=/sbin/init")
    assert c.errors == [] and c.params["quiet"] is None and c.params["loglevel"] == "3"


def test_quoted_values_keep_spaces():
    """Double quotes group a value, as the kernel does."""
    assert cmdline.split('a="b c" d') == [("a", "b c"), ("d", None)]


def test_ip_dhcp_forms():
    """ip=dhcp and ip=<dev>:dhcp."""
    c = cmdline.parse("ip=dhcp ip=eth1:dhcp6")
    assert [(i.autoconf, i.device) for i in c.ip] == [("dhcp", None), ("dhcp6", "eth1")]


def test_ip_static():
    """The kernel's full form with netmask, hostname, device and DNS."""
    c = cmdline.parse("ip=10.0.2.15::10.0.2.2:255.255.255.0:node1:eth0:off:10.0.2.3")
    (ip,) = c.ip
    assert ip.autoconf == "static"
    assert ip.address == ipaddress.ip_interface("10.0.2.15/24")
    assert ip.gateway == ipaddress.ip_address("10.0.2.2")
    assert (ip.hostname, ip.device) == ("node1", "eth0")
    assert ip.dns == (ipaddress.ip_address("10.0.2.3"),)


def test_ip_static_ipv6_in_brackets():
    """IPv6 addresses are bracketed; a prefix length stands for the netmask."""
    (ip,) = cmdline.parse("ip=[fd00::5]::[fd00::1]:64::eth0:none").ip
    assert ip.address == ipaddress.ip_interface("fd00::5/64")
    assert ip.gateway == ipaddress.ip_address("fd00::1")


def test_bad_values_are_named():
    """Each malformed value is reported with its parameter, and left unset."""
    c = cmdline.parse("talos.hostname=-bad- panic=soon ip=1.2.3:::::eth0:off "
                      "talos.config=ftp://x talos.config.sha256=abc talos.halt_if_failed=maybe")
    assert sorted(e.param for e in c.errors) == sorted(
        ["talos.hostname", "panic", "ip", "talos.config", "talos.config.sha256", "talos.halt_if_failed"])
    assert c.hostname is None and c.panic is None and c.ip == [] and c.config_url is None
    ip_error = next(e for e in c.errors if e.param == "ip")
    assert "client address" in ip_error.reason


def test_halt_and_panic_decide_waiting():
    """talos.halt_if_failed or panic=0 mean: wait instead of rebooting."""
    assert cmdline.parse("talos.halt_if_failed").wait_on_failure
    assert cmdline.parse("panic=0").wait_on_failure
    assert not cmdline.parse("panic=10").wait_on_failure


def test_consoles_and_deadline():
    c = cmdline.parse("console=tty0 console=ttyS0,115200 talos.config.deadline=5m")
    assert c.consoles == ["tty0", "ttyS0,115200"]
    assert c.config_deadline == 300.0


def test_read_from_a_file(tmp_path):
    """The path is a parameter, so tests need no /proc."""
    p = tmp_path / "cmdline"
    p.write_text("talos.hostname=Node-1\n")
    assert cmdline.read(p).hostname == "node-1"



def test_hostname_with_a_trailing_newline_is_not_a_hostname():
    """Config names are checked with fullmatch: the pattern's "$" alone accepts "name\\n"."""
    from talos_init.networkd import model

    plan = model.from_config({"machine": {"network": {
        "hostname": "evil-node\n", "searchDomains": ["a.test\n"],
        "extraHostEntries": [{"ip": "10.0.0.5", "aliases": ["b\n"]}]}}})
    assert plan.hostname is None and plan.search_domains == [] and plan.extra_hosts == []
    assert len(plan.errors) == 3, plan.errors
