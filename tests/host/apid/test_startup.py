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


def test_unreadable_config_exits_with_the_reason(tmp_path):
    """A config.json that is not JSON makes apid exit 2 naming the path."""
    (tmp_path / "config.json").write_text("{not json")
    r = run_apid(tmp_path, None)
    assert r.returncode == 2
    assert f"{tmp_path / 'config.json'}: not JSON" in r.stderr + r.stdout


def test_without_a_config_apid_waits_until_one_is_there(tmp_path, certs):
    """No config and no maintenance marker (userdata still fetching): apid waits, saying so
    over NOTIFY_SOCKET, then serves mutual TLS once config.json appears."""
    import os
    import socket

    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(60)
    proc = subprocess.Popen([sys.executable, "-I", "-m", "talos_init.apid", "--listen",
                             "127.0.0.1:0", "--config", str(tmp_path / "config.json"),
                             "--maintenance-marker", str(tmp_path / "none"),
                             "--state-dir", str(tmp_path / "state")],
                            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert notify.recv(4096).decode().startswith("STATUS=waiting for the machine config")
        cfg = {"machine": {"ca": {"crt": pki.encode_field(pki.cert_pem(certs.ca)),
                                  "key": pki.encode_field(pki.key_pem(certs.ca_key))}}}
        (tmp_path / "config.tmp").write_text(json.dumps(cfg))
        (tmp_path / "config.tmp").rename(tmp_path / "config.json")
        msg = notify.recv(4096).decode()
        assert "READY=1" in msg and "listening on 127.0.0.1:" in msg, msg
    finally:
        notify.close()
        proc.terminate()
        proc.wait(20)
