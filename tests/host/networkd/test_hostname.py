"""The generated stable hostname, with networkd in its own UTS and network namespace.

The SMBIOS UUID is read under networkd's --root, so a test gives it one; the
veth links of the namespace are virtual, so without it nothing is generated.
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from talos_init.networkd import stablename

pytestmark = pytest.mark.host

UUID = "8a3e2f61-5c0d-4b7e-9f12-3d4c5b6a7e80"


def _kernel_hostname(pid: int) -> str:
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_generated_name_until_dhcp_then_config_names_the_node(topo, dnsmasq, networkd, tmp_path):
    """No name anywhere: talos-xxx-yyy from the UUID at once; DHCP's replaces it, the config's wins."""
    dmi = tmp_path / "root/sys/class/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "product_uuid").write_text(UUID.upper() + "\n")
    want = stablename.derive(stablename.Identity("smbios-uuid", UUID))
    n = networkd()
    gen = n.wait_event("hostname_generated")
    assert gen["hostname"] == want and gen["source"] == "smbios-uuid" and gen["value"] == UUID
    n.wait_event("hostname_set", hostname=want)
    assert n.find("dhcp_bound") == []  # set before any lease: the node is never "(none)"
    assert (n.root / "etc/hostname").read_text() == want + "\n"
    assert f"127.0.1.1\t{want}" in (n.root / "etc/hosts").read_text()

    n.wait_event("hostname_set", hostname="dhcp-node")  # dnsmasq's option 12 outranks it
    assert _kernel_hostname(n.proc.pid) == "dhcp-node"
    assert (n.root / "etc/hostname").read_text() == "dhcp-node\n"
    n.write_config({"hostname": "cfg-node"})
    n.wait_applied(1)
    assert _kernel_hostname(n.proc.pid) == "cfg-node"
    assert len(n.find("hostname_generated")) == 1


def test_no_uuid_and_only_virtual_links_leaves_the_hostname_alone(topo, networkd):
    """Nothing stable to derive a name from: a warning naming the links, no file, no sethostname."""
    n = networkd()
    warn = n.wait_event("hostname_not_generated")
    assert "eth0" in warn["links"] and "eth1" in warn["links"]
    n.wait_event("applied")
    assert not (n.root / "etc/hostname").exists()
    assert n.find("hostname_set") == [] and n.find("hostname_generated") == []
    assert _kernel_hostname(n.proc.pid) == socket.gethostname()  # the UTS copy is untouched
    assert len(n.find("hostname_not_generated")) == 1  # said once, not on every reconcile
