"""Issue 24: a controlplane and a worker boot together; the worker has no machine CA key.

One two-node boot for every check (two TCG guests are slow): the worker's
apid certificate comes from the controlplane's trustd, calls are proxied
through the controlplane with the caller's role only, and a worker apid
with a wrong token (a real apid on the host, pointed at the controlplane's
trustd through a forward) is refused and keeps retrying, saying why.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.e2e import twonode
from tests.e2e.conftest import Booter, Image, UserdataServer, _serve
from tests.e2e.nodeapi import BOOT_TIMEOUT, osctl, wait_api

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Pair:
    cluster: Path
    cp_port: int  # 127.0.0.1 port of the controlplane's apid
    worker_port: int
    trustd_port: int  # 127.0.0.1 port of the controlplane's trustd
    worker_config: bytes

    @property
    def config(self) -> Path:
        return self.cluster / "osctlconfig"

    def osctl(self, *args: str, port: int | None = None, config: Path | None = None):
        return osctl(config or self.config, port or self.cp_port, *args)

    def proxied(self, *args: str, config: Path | None = None):
        """osctl -e CONTROLPLANE -n WORKER ..."""
        return self.osctl("-n", twonode.WORKER_ADDR, *args, config=config)


@pytest.fixture(scope="module")
def pair(module_boot: Booter, image: Image, tmp_path_factory) -> Iterator[Pair]:
    cluster = twonode.gen_two_node_cluster(tmp_path_factory.mktemp("cluster"))
    p = twonode.plan(cluster)
    servers = []
    try:
        for body, peer, forwards in ((p.controlplane, p.cp_peer, ((p.trustd_port, 50001),)),
                                     (p.worker, p.worker_peer, ())):
            state = UserdataServer(body=body)
            servers.append((state, _serve(state)))
            module_boot(image, server=state, api=True, cpus=1, peer_nic=peer, forwards=forwards)
        cp, worker = module_boot.vms
        wait_api(cluster / "osctlconfig", cp.spec.api_port, BOOT_TIMEOUT, vm=cp)
        wait_api(cluster / "osctlconfig", worker.spec.api_port, BOOT_TIMEOUT, vm=worker)
        yield Pair(cluster, cp.spec.api_port, worker.spec.api_port, p.trustd_port, p.worker)
    finally:
        for _, server in servers:
            server.shutdown()
            server.server_close()


def _served_cert(port: int, ca_pem: bytes) -> x509.Certificate:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def _services(out: str) -> dict[str, dict]:
    return {s["id"]: s for s in json.loads(out)}


def test_worker_has_no_ca_key_and_its_certificate_comes_from_trustd(pair):
    """The worker's config has no CA key; `osctl version` on it works; its certificate is the
    machine CA's, server auth only, without Organization, for its private address; the
    controlplane's trustd logged signing it."""
    config = yaml.safe_load(pair.worker_config)
    assert config["machine"]["type"] == "worker" and config["machine"]["ca"]["key"] == ""
    assert config["machine"]["ca"]["crt"] and config["machine"]["token"]

    r = pair.osctl("version", port=pair.worker_port)
    assert r.returncode == 0 and "talos-init" in r.stdout, r.stderr
    ca_pem = (pair.cluster / "pki" / "ca.crt").read_bytes()
    cert = _served_cert(pair.worker_port, ca_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    ips = {str(ip) for ip in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)}
    assert twonode.WORKER_ADDR in ips, ips

    logs = pair.osctl("logs", "trustd")
    assert logs.returncode == 0, logs.stderr
    assert f"trustd_signed peer={twonode.WORKER_ADDR}" in logs.stdout, logs.stdout
    services = pair.osctl("-o", "json", "services", port=pair.worker_port)
    assert _services(services.stdout)["trustd"]["state"] == "skipped"  # a worker signs nothing


def test_services_are_proxied_through_the_controlplane(pair):
    """`osctl -e CP -n WORKER services` answers with the worker's services (trustd skipped there,
    ready on the controlplane), and the worker logged the call as forwarded."""
    r = pair.proxied("-o", "json", "services")
    assert r.returncode == 0, r.stderr
    assert _services(r.stdout)["trustd"]["state"] == "skipped"
    cp = _services(pair.osctl("-o", "json", "services").stdout)
    assert cp["trustd"]["state"] in ("running", "ready"), cp["trustd"]
    table = pair.osctl("-n", f"{twonode.WORKER_ADDR},{twonode.CP_ADDR}", "version")
    assert table.returncode == 0, table.stderr
    nodes = {line.split()[0] for line in table.stdout.splitlines() if "talos-init" in line}
    assert nodes == {twonode.WORKER_ADDR, twonode.CP_ADDR}, table.stdout
    apid = pair.osctl("logs", "apid", port=pair.worker_port)
    assert 'client="admin via apid-' in apid.stdout and "method=services" in apid.stdout, apid.stdout


def test_reader_proxied_cannot_reboot_the_worker(pair, tmp_path):
    """An os:reader certificate going through the controlplane reads, but reboot is refused."""
    r = subprocess.run([sys.executable, "-m", "talos_init.osctl", "gen", "cert", "viewer", "--role",
                        "os:reader", "--pki", str(pair.cluster / "pki"), "--output-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(pair.config.read_text())
    ctx = doc["contexts"][doc["context"]]
    from talos_init import pki

    ctx["crt"] = pki.encode_field((tmp_path / "viewer.crt").read_bytes())
    ctx["key"] = pki.encode_field((tmp_path / "viewer.key").read_bytes())
    viewer = tmp_path / "viewer.yaml"
    viewer.write_text(yaml.safe_dump(doc))
    assert pair.proxied("services", config=viewer).returncode == 0
    r = pair.proxied("reboot", config=viewer)
    assert r.returncode == 1 and "your certificate (viewer) has os:reader" in r.stderr, r.stderr
    assert pair.osctl("version", port=pair.worker_port).returncode == 0  # still up
    # The controlplane refused it before forwarding (the caller's role is checked there first;
    # the worker checks the forwarded role again: tests/host/trustd/test_proxy.py).
    cp_apid = pair.osctl("logs", "apid").stdout
    assert "api_call_refused" in cp_apid and "client=viewer" in cp_apid, cp_apid
    worker_apid = pair.osctl("logs", "apid", port=pair.worker_port).stdout
    assert "viewer via apid-" in worker_apid and "method=reboot" not in worker_apid, worker_apid


def test_wrong_token_is_refused_and_the_worker_keeps_retrying(pair, tmp_path):
    """A worker apid whose config has another token is refused by the controlplane's trustd;
    it stays up, does not serve, and logs the reason at each attempt."""
    config = yaml.safe_load(pair.worker_config)
    config["machine"]["token"] = "wrong0.0000000000000000"
    config["cluster"].pop("controlPlane", None)  # only the forwarded trustd below: no other address
    (tmp_path / "config.json").write_text(json.dumps(config))
    log = tmp_path / "apid.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-I", "-m", "talos_init.apid", "--listen",
                                 "127.0.0.1:0", "--config", str(tmp_path / "config.json"),
                                 "--control-socket", str(tmp_path / "none.sock"), "--state-dir",
                                 str(tmp_path / "state"), "--trustd", f"127.0.0.1:{pair.trustd_port}",
                                 "--kmsg", str(tmp_path / "console")],  # not the host's kmsg
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        text = ""
        while time.monotonic() < deadline and "attempt=2" not in text:
            text = log.read_text()
            time.sleep(0.2)
        assert "attempt=2" in text and "wrong machine token" in text, text
        assert proc.poll() is None and "apid_listening" not in text
        assert "wrong machine token" in (tmp_path / "console").read_text()  # the node's console
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    trustd = pair.osctl("logs", "trustd").stdout
    assert "trustd_refused" in trustd and "wrong machine token" in trustd, trustd
