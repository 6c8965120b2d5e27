"""apid refuses to start without what it needs, and says what is missing."""

from __future__ import annotations

import json
import subprocess
import sys

from talos_init import pki

from .conftest import ROOT


def run_apid(tmp_path, config: dict | None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    if config is not None:
        path.write_text(json.dumps(config))
    return subprocess.run([sys.executable, "-I", "-m", "talos_init.apid", "--listen", "127.0.0.1:0",
                           "--config", str(path), "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_config_without_ca_key_or_endpoint_exits_with_the_reason(tmp_path, certs):
    """Without machine.ca.key apid needs a trustd; with no endpoint to find one it exits 2 saying so."""
    r = run_apid(tmp_path, {"machine": {"token": "abcdef.0123456789abcdef",
                                        "ca": {"crt": pki.encode_field(pki.cert_pem(certs.ca))}}})
    assert r.returncode == 2
    assert "no machine.ca.key and no cluster.controlPlane.endpoint" in r.stderr + r.stdout


def test_missing_config_exits_with_the_reason(tmp_path):
    """No effective config at all makes apid exit 2 naming the path."""
    r = run_apid(tmp_path, None)
    assert r.returncode == 2
    assert "no effective machine config" in r.stderr + r.stdout
