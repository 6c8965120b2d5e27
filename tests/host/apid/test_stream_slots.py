"""Follow streams are counted per certificate with slots kept for admins (issue #22, finding 3)."""

from __future__ import annotations

import json
import socket
import ssl

from talos_init import pki


def _raw_client(node, name: str, roles: list[str], target: tuple[str, int] | None = None):
    """Connections that all present one certificate, as one osctl config would."""
    host, port = target or (node.host, node.port)
    crt, key = node.client_files(name, roles)
    (node.tmp / f"{name}.crt").write_bytes(crt)
    (node.tmp / f"{name}.key").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=pki.cert_pem(node.certs.ca).decode())
    ctx.load_cert_chain(node.tmp / f"{name}.crt", node.tmp / f"{name}.key")

    def connect() -> ssl.SSLSocket:
        sock = socket.create_connection((host, port), timeout=30)
        return ctx.wrap_socket(sock, server_hostname=host)
    return connect


def _follow(connect, method: str = "events"):
    """Open a follow stream; the socket and its first reply line (an item or an error)."""
    s = connect()
    s.sendall(json.dumps({"v": 1, "method": method,
                          "params": {"follow": True, "tail": 1}}).encode() + b"\n")
    return s, json.loads(s.makefile("rb").readline())


def test_reader_holding_follows_leaves_admins_and_other_readers_served(node):
    """A reader opening 16 `events -f` gets its share; admins still read, tail and follow, others follow."""
    connect = _raw_client(node, "greedy", ["os:reader"])
    held, refused = [], []
    try:
        for _ in range(16):
            s, first = _follow(connect)
            held.append(s)
            if "error" in first:
                refused.append(first["error"])
        assert 0 < len(refused) < 16, refused
        assert {e["code"] for e in refused} == {"overloaded"}
        assert "your certificate already has 4 follow streams open" in refused[0]["message"]

        admin = node.osctlconfig("admin", ["os:admin"])
        (node.tmp / "f.txt").write_text("hello\n")
        r = node.osctl(admin, "read", str(node.tmp / "f.txt"), timeout=30)
        assert r.returncode == 0 and r.stdout == "hello\n", r.stderr
        r = node.osctl(admin, "logs", "containerd", "--tail", "1", timeout=30)
        assert r.returncode == 0 and "containerd line 4" in r.stdout, r.stderr
        r = node.osctl(admin, "dmesg", timeout=30)
        assert r.returncode == 0, r.stderr

        other = _raw_client(node, "other", ["os:reader"])
        s, first = _follow(other)
        held.append(s)
        assert "item" in first, first
        s, first = _follow(_raw_client(node, "root", ["os:admin"]))
        held.append(s)
        assert "item" in first, first
    finally:
        for s in held:
            s.close()


def test_limits_are_raised_or_lowered_with_apid_limit_flags(node, tmp_path):
    """`apid --limit follows_per_client=1` is what the node enforces."""
    from tests.host.apid.conftest import start_apid

    second = tmp_path / "second"
    second.mkdir()
    proc, host, port = start_apid(second, node.tmp / "config.json", node.tmp / "run" / "init.sock",
                                  "--limit", "follows_per_client=1")
    held = []
    try:
        connect = _raw_client(node, "one", ["os:reader"], (host, port))
        s, first = _follow(connect)
        held.append(s)
        assert "item" in first, first
        s, second_reply = _follow(connect)
        held.append(s)
        assert "already has 1 follow streams open" in second_reply["error"]["message"]
    finally:
        for s in held:
            s.close()
        proc.terminate()
        proc.wait(timeout=20)
