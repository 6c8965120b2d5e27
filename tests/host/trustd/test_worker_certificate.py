"""A worker's apid (no machine.ca.key) gets its serving certificate from trustd and renews it."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys

from cryptography import x509
from cryptography.x509.oid import NameOID

from talos_init import pki

from .conftest import ROOT, node_config, start_trustd, stop, wait_for_text


def _served_cert(port: int, ca) -> x509.Certificate:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=pki.cert_pem(ca).decode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def _osctl(config, *args):
    return subprocess.run([sys.executable, "-m", "talos_init.osctl", "--osctlconfig", str(config),
                           *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_worker_serves_with_a_certificate_signed_by_trustd(tmp_path, machine_ca, worker):
    """The worker becomes ready once trustd signed; osctl trusts it; the certificate has no O."""
    t = start_trustd(tmp_path, *machine_ca)
    try:
        worker.start(t.port)
        r = _osctl(worker.osctlconfig(*machine_ca, ["os:reader"]), "version")
        assert r.returncode == 0, r.stderr
        assert "talos-init" in r.stdout
        cert = _served_cert(worker.port, machine_ca[0])
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []
        assert "trustd_signed" in t.log.read_text()
        assert "apid_certificate_signed" in worker.log.read_text()
    finally:
        stop(t.process)


def test_wrong_token_keeps_the_worker_retrying_and_saying_why(tmp_path, machine_ca, worker):
    """With a token trustd does not know, apid stays up, not serving, and logs each refusal."""
    import json

    worker.config.write_text(json.dumps(node_config(*machine_ca, kind="worker", with_key=False,
                                                    token="zzzzzz.zzzzzzzzzzzzzzzz")))
    t = start_trustd(tmp_path, *machine_ca, "--burst", "50")
    try:
        worker.start(t.port, wait_ready=False)
        first = wait_for_text(worker.log, "wrong machine token")
        wait_for_text(worker.log, "attempt=2", after=first)
        assert worker.process.poll() is None
        wait_for_text(worker.console, "<4>apid: no API certificate from trustd yet (attempt 1")
        assert "wrong machine token" in worker.console.read_text()
        assert "apid_listening" not in worker.log.read_text()
    finally:
        stop(t.process)


def test_no_trustd_answering_is_retried_with_the_reason(tmp_path, machine_ca, worker):
    """Nobody on the trustd port: apid logs 'unreachable' and keeps trying."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        worker.start(port, wait_ready=False)
        wait_for_text(worker.log, "unreachable")
        wait_for_text(worker.log, "attempt=2")
        assert worker.process.poll() is None


def test_renewal_at_half_life_keeps_open_connections(tmp_path, machine_ca, worker):
    """With a 6 s lifetime the worker renews at about 3 s; a follow stream opened before lives on,
    and new connections get the new certificate."""
    t = start_trustd(tmp_path, *machine_ca, "--lifetime", "6", "--burst", "50")
    try:
        worker.start(t.port)
        before = _served_cert(worker.port, machine_ca[0])
        config = worker.osctlconfig(*machine_ca, ["os:reader"])
        follow = subprocess.Popen([sys.executable, "-m", "talos_init.osctl", "--osctlconfig",
                                   str(config), "logs", "containerd", "-f"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert follow.stdout.readline() == "first line\n"
            wait_for_text(worker.log, "apid_certificate_renewed", timeout=30)
            after = _served_cert(worker.port, machine_ca[0])
            assert after.serial_number != before.serial_number
            assert after.public_key().public_numbers() != before.public_key().public_numbers()
            worker.supervisor.write_log("containerd", "after renewal")
            assert follow.stdout.readline() == "after renewal\n"
        finally:
            follow.terminate()
            follow.communicate(timeout=30)
        lifetime = before.not_valid_after_utc - before.not_valid_before_utc
        assert lifetime.total_seconds() < 10
    finally:
        stop(t.process)


def test_stop_while_waiting_for_trustd_exits_cleanly(tmp_path, machine_ca, worker):
    """SIGTERM before any trustd signed: apid says so and exits 0 (PID 1's stop, not a kill)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        worker.start(s.getsockname()[1], wait_ready=False)
        wait_for_text(worker.log, "apid_certificate_signed_pending")
        worker.process.terminate()
        assert worker.process.wait(timeout=30) == 0
    assert "stopped before trustd signed" in worker.log.read_text()
