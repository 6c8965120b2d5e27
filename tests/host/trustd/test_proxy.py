"""`osctl -e CP -n WORKER`: the controlplane's apid forwards the call with the caller's roles only."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from talos_init import pki
from talos_init.apid import protocol

from .conftest import ROOT, node_config, start_notified, start_trustd, stop


def _osctl(config, *args):
    return subprocess.run([sys.executable, "-m", "talos_init.osctl", "--osctlconfig", str(config),
                           *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def _osctlconfig(path, ca, ca_key, roles, endpoint):
    cert, key = pki.new_client_cert(ca, ca_key, "tester", roles)
    path.write_text(yaml.safe_dump({"context": "t", "contexts": {"t": {
        "endpoints": [endpoint], "ca": pki.encode_field(pki.cert_pem(ca)),
        "crt": pki.encode_field(pki.cert_pem(cert)), "key": pki.encode_field(pki.key_pem(key))}}}))
    return path


def _cluster(tmp_path, machine_ca, worker):
    """trustd, a worker signed by it, and a controlplane apid (CA key, no PID 1 behind it)."""
    t = start_trustd(tmp_path, *machine_ca)
    worker.supervisor.services = {"kubelet": {"id": "kubelet", "state": "running", "health": None,
                                              "pid": 42, "uptime": 3.0, "restarts": 0, "reason": ""}}
    worker.start(t.port)
    cp_dir = tmp_path / "cp"
    cp_dir.mkdir()
    (cp_dir / "config.json").write_text(json.dumps(node_config(*machine_ca)))
    cp, cp_port = start_notified("talos_init.apid", cp_dir, "apid", [
        "--listen", "127.0.0.1:0", "--config", str(cp_dir / "config.json"),
        "--control-socket", str(cp_dir / "none.sock"), "--state-dir", str(cp_dir / "state")])
    return t, cp, f"127.0.0.1:{cp_port}", f"127.0.0.1:{worker.port}", cp_dir


def test_calls_are_forwarded_with_the_callers_roles_only(tmp_path, machine_ca, worker):
    """services goes through the controlplane to the worker; a reader still cannot reboot it;
    an operator can; -n A,B prefixes every row with its node."""
    t, cp, cp_at, worker_at, cp_dir = _cluster(tmp_path, machine_ca, worker)
    try:
        reader = _osctlconfig(tmp_path / "reader.yaml", *machine_ca, ["os:reader"], cp_at)
        r = _osctl(reader, "-e", cp_at, "-n", worker_at, "services")
        assert r.returncode == 0, r.stderr
        assert "kubelet" in r.stdout and "running" in r.stdout
        assert "api_forward" in (cp_dir / "apid.log").read_text()
        assert "client=\"tester via apid-" in worker.log.read_text()

        r = _osctl(reader, "-e", cp_at, "-n", worker_at, "reboot")
        assert r.returncode == 1
        assert f"{worker_at} (via {cp_at})" in r.stderr and "has os:reader" in r.stderr, r.stderr
        assert worker.supervisor.actions == []

        operator = _osctlconfig(tmp_path / "operator.yaml", *machine_ca, ["os:operator"], cp_at)
        r = _osctl(operator, "-e", cp_at, "-n", worker_at, "reboot")
        assert r.returncode == 0, r.stderr
        assert worker.supervisor.actions == ["reboot"]

        r = _osctl(reader, "-e", cp_at, "-n", f"{worker_at},{cp_at}", "version")
        assert r.returncode == 0, r.stderr
        rows = [line for line in r.stdout.splitlines() if "talos-init" in line]
        assert sorted(line.split()[0] for line in rows) == sorted([worker_at, cp_at]), r.stdout
    finally:
        stop(cp)
        stop(t.process)


def test_follow_stream_is_relayed(tmp_path, machine_ca, worker):
    """`logs -f` through the endpoint delivers the worker's new lines as they come."""
    t, cp, cp_at, worker_at, _ = _cluster(tmp_path, machine_ca, worker)
    try:
        reader = _osctlconfig(tmp_path / "reader.yaml", *machine_ca, ["os:reader"], cp_at)
        proc = subprocess.Popen([sys.executable, "-m", "talos_init.osctl", "--osctlconfig",
                                 str(reader), "-e", cp_at, "-n", worker_at, "logs", "containerd", "-f"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert proc.stdout.readline() == "first line\n"
            worker.supervisor.write_log("containerd", "second line")
            assert proc.stdout.readline() == "second line\n"
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    finally:
        stop(cp)
        stop(t.process)


def _raw_call(port, ca, ca_key, roles, request: bytes) -> dict:
    cert, key = pki.new_client_cert(ca, ca_key, "mallory", roles)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=pki.cert_pem(ca).decode())
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "c.crt").write_bytes(pki.cert_pem(cert))
        (Path(d) / "c.key").write_bytes(pki.key_pem(key))
        ctx.load_cert_chain(f"{d}/c.crt", f"{d}/c.key")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(request)
            return json.loads(tls.makefile("rb").readline())


def test_forwarded_roles_are_trusted_only_from_a_node_certificate(tmp_path, machine_ca, worker):
    """A user certificate sending as_roles gets nothing; a worker refuses to forward at all."""
    t = start_trustd(tmp_path, *machine_ca)
    try:
        worker.start(t.port)
        forged = protocol.encode({"method": "reboot", "params": {}, "as_roles": ["os:admin"],
                                  "as_client": "admin"})
        reply = _raw_call(worker.port, *machine_ca, ["os:reader"], forged)
        assert reply["error"]["code"] == "permission_denied"
        assert "may not forward roles" in reply["error"]["message"]
        assert worker.supervisor.actions == []
        # The impersonator role alone allows no call.
        reply = _raw_call(worker.port, *machine_ca, ["os:impersonator"], protocol.request("reboot"))
        assert reply["error"]["code"] == "permission_denied", reply
        # A worker holds no CA key, so it has no identity to forward with.
        reply = _raw_call(worker.port, *machine_ca, ["os:admin"],
                          protocol.request("version", node="127.0.0.1:1"))
        assert reply["error"]["code"] == "failed_precondition", reply
        assert "use a controlplane as endpoint" in reply["error"]["message"]
    finally:
        stop(t.process)
