"""The osctl lines `make run` prints work as pasted, against a real apid on loopback."""

import os
import shlex
import subprocess

import yaml

from tests.e2e.run_node import osctl_hint, point_osctlconfig
from tests.host.apid.conftest import ROOT


def test_printed_export_and_osctl_line_reach_the_node(node, monkeypatch):
    """export OSCTLCONFIG=... then .venv/bin/osctl services, run from the repository, lists services."""
    config = node.osctlconfig("admin", ["os:admin"])
    doc = yaml.safe_load(config.read_text())
    doc["contexts"]["test"]["endpoints"] = ["127.0.0.1:1"]  # as cached from an earlier run
    config.write_text(yaml.safe_dump(doc))
    point_osctlconfig(config, node.target)
    assert oct(config.stat().st_mode & 0o777) == "0o600"

    monkeypatch.chdir(ROOT)
    export, command = osctl_hint(config, node.port)
    assert command.split()[:2] == [".venv/bin/osctl", "services"]  # short, thanks to the export
    name, _, value = export.removeprefix("export ").partition("=")
    env = {k: v for k, v in os.environ.items() if k != "OSCTLCONFIG"} | {name: value}
    r = subprocess.run(shlex.split(command), cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:3] == ["ID", "STATE", "HEALTH"] and "containerd" in r.stdout


def test_a_config_with_its_own_pki_gets_the_port_on_the_line():
    """Without a generated osctlconfig the line carries -e with this run's port."""
    (line,) = osctl_hint(None, 50123)
    assert line.endswith("osctl -e 127.0.0.1:50123 services")
