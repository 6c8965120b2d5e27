"""Each role's allowed calls succeed and the others are refused, through osctl's client library."""

from __future__ import annotations

import pytest
import yaml

from talos_init.osctl.client import Client, OsctlError, load_context

READS = [("version", {}), ("services", {}), ("timeline", {}), ("memory", {}), ("mounts", {}),
         ("interfaces", {}), ("routes", {}), ("stats", {}), ("ps", {})]
READ_STREAMS = [("logs", {"id": "containerd"}), ("events", {}), ("dmesg", {})]
OPERATOR = [("service.restart", {"id": "containerd"}), ("service.stop", {"id": "kubelet"}),
            ("service.start", {"id": "kubelet"}), ("reboot", {}), ("shutdown", {})]
ADMIN = [("config", {}), ("ls", {"path": "/etc"})]
ADMIN_STREAMS = [("read", {"path": "/etc/hostname"})]


def client_for(node, role: str) -> Client:
    return Client(load_context(node.osctlconfig(role.split(":")[1], [role]), None))


@pytest.mark.parametrize("role", ["os:reader", "os:operator", "os:admin"])
def test_every_role_reads(node, role):
    """Readers, operators and admins all get the read-only calls and streams."""
    client = client_for(node, role)
    try:
        for method, params in READS:
            assert client.call(node.target, method, params) is not None, method
        for method, params in READ_STREAMS:
            assert list(client.stream(node.target, method, params)), method
    finally:
        client.close()


def test_reader_is_refused_everything_else(node):
    """A reader may not act on services, power, files or the config."""
    client = client_for(node, "os:reader")
    try:
        for method, params in [*OPERATOR, *ADMIN]:
            with pytest.raises(OsctlError, match=f"role lacks permission.*{method} needs role"):
                client.call(node.target, method, params)
        with pytest.raises(OsctlError, match="read needs role os:admin"):
            list(client.stream(node.target, "read", {"path": "/etc/hostname"}))
    finally:
        client.close()
    assert node.supervisor.actions == []


def test_operator_acts_but_cannot_read_files(node):
    """An operator restarts services, reboots and shuts down, but cannot read files or config."""
    client = client_for(node, "os:operator")
    try:
        for method, params in OPERATOR:
            client.call(node.target, method, params)
        for method, params in ADMIN:
            with pytest.raises(OsctlError, match="needs role os:admin;"):
                client.call(node.target, method, params)
    finally:
        client.close()
    assert node.supervisor.actions == ["restart containerd", "stop kubelet", "start kubelet",
                                       "reboot", "shutdown"]


def test_admin_reads_files_and_a_redacted_config(node):
    """An admin lists and reads files and gets the config with every secret redacted."""
    client = client_for(node, "os:admin")
    try:
        config = client.call(node.target, "config")
        names = [e["path"] for e in client.call(node.target, "ls", {"path": str(node.tmp)})]
        chunks = list(client.stream(node.target, "read", {"path": str(node.tmp / "config.json")}))
    finally:
        client.close()
    assert config["machine"]["ca"]["key"] == "[redacted]"
    assert config["machine"]["token"] == "[redacted]" and config["cluster"]["token"] == "[redacted]"
    assert config["machine"]["ca"]["crt"].startswith("LS0t")  # certificates stay
    assert str(node.tmp / "config.json") in names
    assert chunks[-1]["truncated"] is False and chunks[-1]["size"] > 0
    assert "[redacted]" not in yaml.safe_dump(chunks)  # read is raw: admins may read the file


def test_pid1_errors_reach_the_client(node):
    """A service PID 1 does not know is reported as not found with PID 1's words."""
    client = client_for(node, "os:operator")
    try:
        with pytest.raises(OsctlError, match="not found: no service 'ghost'"):
            client.call(node.target, "service.restart", {"id": "ghost"})
    finally:
        client.close()
