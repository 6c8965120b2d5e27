"""Throwaway PKI for tests: a Talos-style Ed25519 CA and an ECDSA CA, base64 PEM like Talos stores."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class B64CA:
    crt: str  # base64 of PEM
    key: str


def make_ca(name: str, ed: bool) -> B64CA:
    key = ed25519.Ed25519PrivateKey.generate() if ed else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, None if ed else hashes.SHA256())
    )
    crt = cert.public_bytes(serialization.Encoding.PEM)
    if ed:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pem = pem.replace(b"PRIVATE KEY", b"ED25519 PRIVATE KEY")  # the label Talos writes
    else:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    return B64CA(base64.b64encode(crt).decode(), base64.b64encode(pem).decode())


MACHINE_CA = make_ca("talos", ed=True)
CLUSTER_CA = make_ca("kubernetes", ed=False)


def fill(text: str) -> str:
    """Replace @MACHINE_CRT@-style placeholders in a fixture with real base64 PEM."""
    return (
        text.replace("@MACHINE_CRT@", MACHINE_CA.crt)
        .replace("@MACHINE_KEY@", MACHINE_CA.key)
        .replace("@CLUSTER_CRT@", CLUSTER_CA.crt)
        .replace("@CLUSTER_KEY@", CLUSTER_CA.key)
    )
