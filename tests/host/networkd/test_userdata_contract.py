"""networkd applies the effective config exactly as the userdata service writes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from talos_init.userdata import store
from talos_init.userdata.validate import parse

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parents[3]
EXTRA_DOCS = """
---
apiVersion: v1alpha1
kind: HostnameConfig
hostname: worker-7
---
apiVersion: v1alpha1
kind: ResolverConfig
nameservers:
  - address: 10.88.0.53
"""


def test_example_worker_config_with_hostname_and_resolver_documents(topo, dnsmasq, networkd):
    """configs/worker.yaml plus HostnameConfig/ResolverConfig, written by userdata's store, is applied."""
    text = (ROOT / "configs/worker.yaml").read_text() + EXTRA_DOCS
    result = parse(text)
    assert result.config is not None, result.problems
    n = networkd(cmdline="ip=off")
    store.write_config(
        text.encode(),
        result.config.effective,
        n.config_path.with_name("config.yaml"),
        n.config_path,
    )
    n.wait_applied(1)
    # deviceSelector hardwareAddr "52:54:00:*" with dhcp: true selects eth0 (52:54:00:aa:bb:01).
    bound = n.wait_event("dhcp_bound", link="eth0")
    n.wait(lambda: bound["address"] in topo.addresses("eth0"), "the lease address on eth0")
    n.wait_notify("READY=1")
    assert (n.root / "etc/hostname").read_text() == "worker-7\n"
    resolv = (n.root / "etc/resolv.conf").read_text()
    assert "nameserver 10.88.0.53" in resolv and "10.77.0.53" not in resolv
    assert n.find("dhcp_start", link="eth1") == []
