"""A broken machine config is reported on the console; fixing it on the server fixes the node.

Issue 5. One boot: the server first serves configs/worker.yaml with an unknown field and
a bad CIDR. The node must print both errors (file:line:col path: message) and
hold containerd back; the test then swaps the served body for the good file and
the node, still in the same boot, fetches it on its next round (15-30 s) and
reaches containerd ready.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import Image, UserdataServer

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT = 600  # TCG on two shared cores
GOOD = (REPO / "configs" / "worker.yaml").read_text()


def broken(text: str) -> tuple[str, list[str]]:
    """``text`` with an unknown field and a bad CIDR, and the console lines that must name them."""
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line == "    install:\n")
    lines.insert(at, "    frobnicate: true\n")  # unknown field under machine
    item = "                - 10.0.2.0/{}\n"  # under machine.kubelet.nodeIP.validSubnets
    out = "".join(lines).replace(item.format(24), item.format(33), 1)
    assert "10.0.2.0/33" in out, "configs/worker.yaml changed: the bad CIDR was not placed"
    cidr_line = out[:out.index("10.0.2.0/33")].count("\n") + 1
    expected = [
        rf"config\.yaml:{at + 1}:5: machine\.frobnicate: unknown field",
        rf"config\.yaml:{cidr_line}:\d+: "
        rf"machine\.kubelet\.nodeIP\.validSubnets\[0\]: '10\.0\.2\.0/33'",
    ]
    return out, expected


def test_broken_config_is_reported_then_fixed_without_reboot(boot, image: Image,
                                                             userdata_server: UserdataServer):
    """Both errors reach the console; once the server has the good file, containerd gets ready."""
    bad, expected = broken(GOOD)
    userdata_server.body = bad.encode()
    vm = boot(image, server=userdata_server)

    for pattern in expected:
        vm.wait_for(pattern, BOOT_TIMEOUT)
    vm.wait_for(r"the machine config is invalid: 2 errors", 120)
    vm.wait_for(r"userdata: retrying in \d+s", 120)
    assert not re.search(r"service_state service=containerd state=ready\b", vm.console), \
        "containerd got ready on an invalid config"
    asked_while_broken = len(userdata_server.requests)
    since = len(vm.console)

    userdata_server.body = GOOD.encode()
    # "machine config ready" goes to kmsg at info level, below the console's loglevel=6.
    vm.wait_for(r"service_state service=userdata state=finished\b", 120, since=since)
    vm.wait_for(r"service_state service=containerd state=ready\b", 300, since=since)
    assert len(userdata_server.requests) > asked_while_broken
    assert not vm.exited, "the VM exited (QEMU runs with -no-reboot: a reboot ends it)"
    assert vm.console.count("Linux version") == 1, "the kernel booted more than once"
