"""The default CNI conf gives a pod an address on the cni0 bridge with Debian's real plugins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CONF = REPO / "configs/cni/99-talos-init-default.conflist"


def test_default_conf_gives_a_pod_a_reachable_address(tmp_path):
    """bridge + host-local put 10.88.0.x on the pod's eth0, reachable from the node's cni0;
    portmap makes a hostPort on the node reach it."""
    child = Path(__file__).with_name("cni_child.py")
    r = subprocess.run(["unshare", "--net", sys.executable, str(child), str(CONF),
                        str(tmp_path / "ipam")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for res in out["results"]:
        assert res["rc"] == 0, res
    added = json.loads(out["results"][0]["out"])
    assert added["ips"][0]["address"] == "10.88.0.2/16"
    eth0 = [i for i in out["pod_addrs"] if i["ifname"] == "eth0"]
    assert eth0 and any(a["local"] == "10.88.0.2" for a in eth0[0]["addr_info"])
    assert out["loopback_rc"] == 0, out["loopback_err"]
    assert out["reply"] == "pod says hi"  # node -> pod across cni0
    # portmap, chained after bridge: the hostPort on the node's address reaches the pod
    # through iptables DNAT rules (nf_tables backend, as the image ships iptables).
    assert [r["type"] for r in out["results"]] == ["bridge", "portmap"]
    assert "CNI-HOSTPORT-DNAT" in out["nat"] and "--to-destination 10.88.0.2:8080" in out["nat"]
    assert out["hostport_reply"] == "pod says hi", out["nat"]
