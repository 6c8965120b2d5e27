"""A rogue DHCP server's names never reach a file or the kernel raw (issue #22, finding 2).

dnsmasq in the server namespace forces options 12 (hostname), 15 (domain
name) and 119 (search list) holding newlines and resolver directives.
"""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.host

# dnsmasq turns \n inside a quoted value into a newline in its configuration files only.
ROGUE_CONF = r"""dhcp-option-force=15,"dhcp.test\nsearch evil.test\noptions rotate\nnameserver 10.77.0.66"
dhcp-option-force=12,"evil-node\n"
dhcp-option-force=119,good.test,"evil.test options.test"
"""


def test_rogue_dhcp_names_are_dropped_and_files_stay_line_safe(topo, start_dnsmasq, networkd,
                                                               tmp_path):
    """Names with newlines or spaces are refused with a log line; the operator's resolver stays alone."""
    conf = tmp_path / "rogue.conf"
    conf.write_text(ROGUE_CONF)
    start_dnsmasq(extra=[f"--conf-file={conf}"])
    n = networkd()
    n.write_config({"nameservers": ["10.77.0.53"]})
    bound = n.wait_event("dhcp_bound", link="eth0")
    n.wait_event("resolv_conf_written", after=n.events.index(bound))
    resolv = (n.root / "etc/resolv.conf").read_text()
    assert "10.77.0.66" not in resolv and "rotate" not in resolv and "evil" not in resolv, resolv
    assert "options" not in resolv, resolv
    assert [line for line in resolv.splitlines() if line.startswith("nameserver")] == \
        ["nameserver 10.77.0.53"], resolv
    assert "search good.test" in resolv.splitlines(), resolv
    for name in ("hostname", "hosts"):
        text = (n.root / "etc" / name).read_text() if (n.root / "etc" / name).exists() else ""
        assert "evil" not in text, (name, text)
    kernel = subprocess.run(["nsenter", "-t", str(n.proc.pid), "-u", "hostname"],
                            capture_output=True, text=True, check=True).stdout
    assert "evil" not in kernel, kernel
    ignored = n.find("dhcp_option_ignored")
    assert {e["option"] for e in ignored} >= {"domain_name", "domain_search", "host_name"}, ignored
