"""apid refuses what it must, and osctl says why in words, against a real apid on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl

from talos_init import pki


def test_no_client_certificate_is_refused(node):
    """A client without a certificate is refused and told the node requires one."""
    r = node.osctl(node.osctlconfig("anon", [], with_cert=False), "version")
    assert r.returncode == 1
    assert "requires a client certificate" in r.stderr, r.stderr


def test_certificate_from_another_ca_is_refused(node):
    """A certificate signed by a CA other than the machine CA is refused as untrusted."""
    r = node.osctl(node.osctlconfig("stranger", ["os:admin"], ca="other"), "version")
    assert r.returncode == 1
    assert "does not trust your client certificate" in r.stderr, r.stderr


def test_expired_certificate_is_refused(node):
    """An expired client certificate from the right CA is refused and called expired."""
    r = node.osctl(node.osctlconfig("old", ["os:admin"], expired=True), "version")
    assert r.returncode == 1
    assert "refused your client certificate: it expired" in r.stderr, r.stderr


def test_reader_cannot_reboot(node):
    """A reader calling reboot gets 'role lacks permission' and PID 1 never hears of it."""
    r = node.osctl(node.osctlconfig("viewer", ["os:reader"]), "reboot")
    assert r.returncode == 1
    assert "role lacks permission" in r.stderr
    assert "reboot needs role os:admin or os:operator; your certificate (viewer) has os:reader" \
        in r.stderr, r.stderr
    assert node.supervisor.actions == []


def test_certificate_without_a_role_gets_nothing(node):
    """A valid certificate whose Organization names no os:* role may not even read."""
    r = node.osctl(node.osctlconfig("nobody", ["developers"]), "services")
    assert r.returncode == 1 and "has no os:* role" in r.stderr, r.stderr


def test_untrusted_server_is_named(node, certs):
    """A node whose certificate is not from the CA in the client config is called untrusted."""
    r = node.osctl(node.osctlconfig("admin", ["os:admin"], trust=certs.other_ca), "version")
    assert r.returncode == 1
    assert f"untrusted server {node.target}" in r.stderr, r.stderr


def test_unreachable_node_is_named(node):
    """A port where nothing listens is reported as node unreachable."""
    r = node.osctl(node.osctlconfig("admin", ["os:admin"]), "-e", "127.0.0.1:1", "version")
    assert r.returncode == 1
    assert "node 127.0.0.1:1 unreachable" in r.stderr, r.stderr


def _tls(node, roles=("os:admin",)) -> ssl.SSLSocket:
    crt, key = node.client_files("raw", list(roles))
    (node.tmp / "raw.crt").write_bytes(crt)
    (node.tmp / "raw.key").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=pki.cert_pem(node.certs.ca).decode())
    ctx.load_cert_chain(node.tmp / "raw.crt", node.tmp / "raw.key")
    sock = socket.create_connection((node.host, node.port), timeout=30)
    return ctx.wrap_socket(sock, server_hostname=node.host)


def test_tls_below_1_3_is_refused(node):
    """A client limited to TLS 1.2 cannot complete a handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=pki.cert_pem(node.certs.ca).decode())
    with socket.create_connection((node.host, node.port), timeout=30) as raw:
        try:
            ctx.wrap_socket(raw, server_hostname=node.host)
        except ssl.SSLError as e:
            assert "VERSION" in (e.reason or ""), e
        else:
            raise AssertionError("TLS 1.2 handshake succeeded")


def test_request_too_large_is_refused(node):
    """A request line over the size limit is answered with too_large."""
    with _tls(node) as s:
        s.sendall(b'{"v":1,"method":"version","params":{"pad":"' + b"x" * 200_000 + b'"}}\n')
        reply = s.makefile("rb").readline()
    assert b'"too_large"' in reply and b"65536" in reply, reply


def test_silent_clients_do_not_block_others(node):
    """Connections that send nothing, before or after the TLS handshake, do not delay a real call."""
    silent = [socket.create_connection((node.host, node.port), timeout=30) for _ in range(20)]
    handshaken = [_tls(node) for _ in range(5)]
    try:
        r = node.osctl(node.osctlconfig("admin", ["os:admin"]), "version", timeout=30)
        assert r.returncode == 0 and "talos-init" in r.stdout, r.stderr
    finally:
        for s in [*silent, *handshaken]:
            s.close()


def test_unknown_call_and_bad_version_are_refused(node):
    """An unknown call and a request in another API version get distinct errors."""
    with _tls(node) as s:
        s.sendall(b'{"v":1,"method":"format-disk","params":{}}\n')
        assert b"unknown_method" in s.makefile("rb").readline()
    with _tls(node) as s:
        s.sendall(b'{"v":9,"method":"version","params":{}}\n')
        assert b"unsupported_version" in s.makefile("rb").readline()
