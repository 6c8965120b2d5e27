"""The real init (host mode) serves the control socket: timeline, services, and reboot by request."""

from __future__ import annotations

import pytest

from tests.host.pid1.conftest import InitProcess

from .conftest import LineClient


@pytest.fixture
def init(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "cmdline").write_text("talos.hostname=node-1\n")
    proc = InitProcess(root, "--cmdline", str(root / "cmdline"))
    yield proc
    proc.stop()


def test_init_answers_and_reboots_through_the_control_socket(init):
    """init's control socket lists its boot phases and services, and a reboot request shuts it down."""
    init.wait_phase("services", "done")
    client = LineClient(init.root / "run" / "talos" / "init.sock")
    timeline = client.call("timeline", rid=1)["result"]
    assert ("control", "done") in [(e["name"], e["state"]) for e in timeline]
    assert isinstance(client.call("services.list", rid=2)["result"], list)
    assert client.call("reboot", rid=3)["result"] == {"action": "reboot", "accepted": True}
    client.close()
    assert init.wait_exit() == 0, init.log_text()
    request = [e for e in init.lines if e.get("name") == "shutdown" and e.get("state") == "start"]
    assert request and request[0]["reason"] == "API request"
