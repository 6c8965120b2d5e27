"""The generated hostname: derivation, validity, identity fallbacks, and where it ranks."""

from __future__ import annotations

import ipaddress
import random
import re
import uuid

from talos_init import cmdline
from talos_init.cmdline import HOSTNAME_RE
from talos_init.networkd import model, stablename
from talos_init.networkd.daemon import Networkd, Options
from talos_init.networkd.dhcp import LeaseInfo
from talos_init.networkd.links import Link
from talos_init.networkd.stablename import Identity

NAME_RE = re.compile(r"^talos-[a-z0-9]{3}-[a-z0-9]{3}$")
UUID = "4c4c4544-0042-3510-8051-b7c04f4e3332"


def _nic(index: int, name: str, mac: str, perm: str | None = None, bus: str | None = "virtio0"):
    return Link(index, name, mac, None, True, True, 1500, None, False, perm, "virtio_net", bus)


def _sysfs(tmp_path, product_uuid: str | None):
    sysfs = tmp_path / "sys"
    (sysfs / "class/dmi/id").mkdir(parents=True)
    if product_uuid is not None:
        (sysfs / "class/dmi/id/product_uuid").write_text(product_uuid + "\n")
    return sysfs


def test_name_is_a_stable_valid_label():
    """Same identity, same name; `talos-xxx-yyy`, a lowercase RFC 1123 label a kubelet accepts."""
    name = stablename.derive(Identity("smbios-uuid", UUID))
    assert name == stablename.derive(Identity("smbios-uuid", UUID))
    assert NAME_RE.match(name) and HOSTNAME_RE.match(name) and len(name) <= 63, name
    assert name == "talos-" + name[6:9] + "-" + name[10:]


def test_distinct_identities_give_distinct_names():
    """2000 machines (UUIDs and MACs): no two share a name (36^6 names; ~0.1% odds of a clash)."""
    rnd = random.Random(7)  # fixed seed: the same inputs on every run
    uuids = [str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(1000)]
    macs = [":".join(f"{rnd.getrandbits(8):02x}" for _ in range(6)) for _ in range(1000)]
    idents = [Identity("smbios-uuid", u) for u in uuids] + [Identity("mac", m) for m in macs]
    names = {stablename.derive(i) for i in idents}
    assert len(names) == len(idents)
    assert all(NAME_RE.match(n) for n in names)
    # The source is part of the hash: a MAC that spells like a UUID still names another machine.
    as_mac, as_uuid = Identity("mac", UUID), Identity("smbios-uuid", UUID)
    assert stablename.derive(as_mac) != stablename.derive(as_uuid)


def test_smbios_uuid_is_preferred_and_normalised(tmp_path):
    """A real product UUID wins over the NICs, whatever its case."""
    sysfs = _sysfs(tmp_path, UUID.upper())
    ident = stablename.identity(sysfs, [_nic(2, "eth0", "52:54:00:12:34:56")])
    assert ident == Identity("smbios-uuid", UUID)


def test_placeholder_or_unreadable_uuid_falls_back_to_the_first_physical_nic(tmp_path):
    """All-0 / all-f / garbage / no UUID: the permanent MAC of the lowest-ifindex physical NIC."""
    links = [
        _nic(5, "eth1", "52:54:00:00:00:02"),
        _nic(3, "eth0", "02:aa:aa:aa:aa:aa", perm="52:54:00:00:00:01"),  # MAC changed (bond slave)
        _nic(2, "veth0", "0a:00:00:00:00:09", bus=None),  # virtual: not an identity
    ]
    for i, bad in enumerate(
        ["00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
         "Not Settable", None]
    ):
        sysfs = _sysfs(tmp_path / str(i), bad)
        assert stablename.product_uuid(sysfs) is None, bad
        assert stablename.identity(sysfs, links) == Identity("mac", "52:54:00:00:00:01", "eth0")
    no_perm = [_nic(4, "eno1", "52:54:00:00:00:07")]
    want = Identity("mac", "52:54:00:00:00:07", "eno1")  # no permanent MAC known: the current one
    assert stablename.identity(tmp_path / "none", no_perm) == want


def test_no_identity_without_uuid_and_physical_nic(tmp_path):
    """Only virtual links and no UUID: nothing stable to derive a name from."""
    virtual = [_nic(2, "veth0", "0a:00:00:00:00:09", bus=None)]
    assert stablename.identity(tmp_path / "sys", virtual) is None


def _lease(link: str, hostname: str | None) -> LeaseInfo:
    return LeaseInfo(link, ipaddress.ip_interface("10.0.0.5/24"), (), (), (), hostname, None, None,
                     (), None, None, None)


def test_precedence_config_cmdline_dhcp_generated(tmp_path):
    """config > kernel command line > DHCP > generated; the generated name is not sent to DHCP."""
    _sysfs(tmp_path, UUID)
    n = Networkd(Options(root=tmp_path))
    generated = stablename.derive(Identity("smbios-uuid", UUID))
    early = model.from_cmdline(cmdline.parse(""))
    n.plan = early
    assert n.hostname() == generated and n.generated_hostname == generated
    assert n.hostname(generate=False) is None
    n.leases["eth0"] = _lease("eth0", "dhcp-node")
    assert n.hostname() == "dhcp-node"
    n.plan = early = model.from_cmdline(cmdline.parse("talos.hostname=cmd-node"))
    assert n.hostname() == "cmd-node"
    config = model.from_config({"machine": {"network": {"hostname": "cfg-node"}}})
    n.plan = model.merge(early, config)
    assert n.hostname() == "cfg-node"
    n.plan = model.merge(early, model.from_config({"machine": {"network": {}}}))
    assert n.hostname() == "cmd-node"  # a config without a hostname keeps the cmdline's
    n.leases.clear()
    n.plan = model.from_cmdline(cmdline.parse(""))
    assert n.hostname() == generated  # the lease is gone: back to the generated name


def test_generated_name_is_kept_while_running(tmp_path):
    """Derived once: a NIC appearing later (a lower ifindex) does not rename the running node."""
    n = Networkd(Options(root=tmp_path))
    assert n.hostname() is None  # no UUID, no NIC yet
    n.links.by_index[3] = _nic(3, "eth0", "52:54:00:00:00:01")
    first = n.hostname()
    assert first == stablename.derive(Identity("mac", "52:54:00:00:00:01", "eth0"))
    n.links.by_index[2] = _nic(2, "eno0", "52:54:00:00:00:09")
    assert n.hostname() == first


def test_an_invalid_dhcp_hostname_does_not_outrank_the_generated_one(tmp_path):
    """Option 12 that is no hostname ("my host_1") is dropped: the generated name stays."""
    _sysfs(tmp_path, UUID)
    n = Networkd(Options(root=tmp_path))
    n.request_reconcile = lambda: None  # no event loop here: only the lease bookkeeping is tested
    n.plan = model.from_cmdline(cmdline.parse(""))
    n._lease_event("bound", "eth0", _lease("eth0", "my host_1"))
    assert n.leases["eth0"].hostname is None
    assert n.hostname() == stablename.derive(Identity("smbios-uuid", UUID))
    n._lease_event("renewed", "eth0", _lease("eth0", "dhcp-node"))
    assert n.hostname() == "dhcp-node"
