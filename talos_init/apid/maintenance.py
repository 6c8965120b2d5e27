"""Maintenance mode: the node has no machine config yet (no talos.config=, or the URL
answered 404), so there is no machine CA to check clients against.

As Talos: apid serves TLS with a certificate made at start (a throwaway self-signed key,
never stored), asks for no client certificate, and answers only the calls an operator
needs to pick the install disk and hand over a config. Its SHA-256 fingerprint of the
public key (SPKI, base64 as Talos prints it) goes to the console, so ``osctl
--insecure --cert-fingerprint FP`` can pin it. Every other call is refused with one
sentence saying why.
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import tempfile
from pathlib import Path

from talos_init.apid.protocol import FAILED_PRECONDITION, ApiError

# Read-only facts and the one way out. Never reboot, shutdown, reset, files or images here.
CALLS = frozenset({"version", "disks", "interfaces", "routes", "dmesg", "apply-config"})
MARKER = Path("/run/talos/maintenance")  # written by userdata: no config is coming by itself


def refuse(method: str) -> ApiError:
    return ApiError(FAILED_PRECONDITION,
                    f"node is in maintenance mode: {method} is not served until a machine config "
                    f"is applied (served now: {', '.join(sorted(CALLS))}; "
                    "osctl --insecure apply-config -f FILE)")


def spki_fingerprint(cert_der: bytes) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a DER certificate: what osctl pins."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_der_x509_certificate(cert_der)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def server_context(state_dir: Path, hostname: str) -> tuple[ssl.SSLContext, str]:
    """TLS 1.3 with a new self-signed certificate and no client certificate asked for;
    returns the context and the certificate's SPKI fingerprint."""
    from cryptography.hazmat.primitives import serialization

    from talos_init import pki

    cert, key = pki.new_ca(f"talos-init maintenance {hostname}", days=30)
    fingerprint = spki_fingerprint(cert.public_bytes(serialization.Encoding.DER))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_NONE
    ctx.num_tickets = 0
    with tempfile.TemporaryDirectory(prefix="apid-", dir=state_dir) as tmp:
        crt_path, key_path = Path(tmp) / "m.crt", Path(tmp) / "m.key"
        crt_path.write_bytes(pki.cert_pem(cert))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pki.key_pem(key))
        ctx.load_cert_chain(str(crt_path), str(key_path))
    return ctx, fingerprint


def announce(fingerprint: str, kmsg: Path, where: str) -> None:
    """The fingerprint on the console (kmsg at a level the console prints even when quiet)."""
    lines = ["apid: MAINTENANCE MODE: no machine config; waiting for "
             "`osctl --insecure apply-config -f FILE` on port " + where,
             f"apid: certificate fingerprint (SHA-256 SPKI): {fingerprint}"]
    try:
        with kmsg.open("w") as f:
            for line in lines:
                f.write(f"<2>{line}\n")
                f.flush()
    except OSError:
        pass  # the service log (stderr) has the same lines
