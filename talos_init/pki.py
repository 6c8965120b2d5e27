"""X.509 for the API: the machine CA, client certificates with roles, node serving certificates.

Talos stores certificates and keys in the machine config as base64 of the
PEM text, and labels Ed25519 keys "ED25519 PRIVATE KEY" (PKCS#8 inside);
both are read here. New keys are ECDSA P-256: every TLS stack takes them.
Imported by apid and by osctl, never by PID 1.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = (ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
              | ed448.Ed448PrivateKey)


class PkiError(ValueError):
    """A certificate or key that cannot be used; the message names which and why."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def decode_field(value: str, what: str) -> bytes:
    """PEM bytes from a config field: base64 of PEM (Talos) or the PEM text itself."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    try:
        pem = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PkiError(f"{what}: neither PEM nor base64-encoded PEM") from None
    if not pem.lstrip().startswith(b"-----BEGIN"):
        raise PkiError(f"{what}: base64 decodes to something that is not PEM")
    return pem


def encode_field(pem: bytes) -> str:
    return base64.b64encode(pem).decode()


def load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise PkiError(f"{what}: not a PEM certificate ({e})") from None


def load_key(pem: bytes, what: str) -> PrivateKey:
    # Talos' own label for PKCS#8 Ed25519 keys; OpenSSL only knows "PRIVATE KEY".
    pem = pem.replace(b"ED25519 PRIVATE KEY-----", b"PRIVATE KEY-----")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise PkiError(f"{what}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey,
                            ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        raise PkiError(f"{what}: unsupported key type {type(key).__name__}")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    algorithm = None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) \
        else hashes.SHA256()
    return builder.sign(key, algorithm)


def _name(cn: str, orgs: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object,
             not_before: datetime.datetime, not_after: datetime.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
            .not_valid_before(not_before).not_valid_after(not_after))


def new_ca(org: str, *, days: int = 3650) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA, like Talos' machine CA (O=<cluster>, CN=<cluster>)."""
    key = new_key()
    now = _utcnow()
    name = _name(org, [org])
    cert = _sign(_builder(name, name, key.public_key(), now - datetime.timedelta(hours=1),
                          now + datetime.timedelta(days=days))
                 .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                 .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                              content_commitment=False, key_encipherment=False,
                                              data_encipherment=False, key_agreement=False,
                                              encipher_only=False, decipher_only=False),
                                critical=True), key)
    return cert, key


def _leaf(ca_cert: x509.Certificate, ca_key: PrivateKey, subject: x509.Name,
          usage: x509.ObjectIdentifier, sans: list[x509.GeneralName],
          not_before: datetime.datetime, not_after: datetime.datetime,
          ) -> tuple[x509.Certificate, PrivateKey]:
    key = new_key()
    return _leaf_cert(ca_cert, ca_key, subject, key.public_key(), usage, sans,
                      not_before, not_after), key


def _leaf_cert(ca_cert: x509.Certificate, ca_key: PrivateKey, subject: x509.Name, public_key: object,
               usage: x509.ObjectIdentifier, sans: list[x509.GeneralName],
               not_before: datetime.datetime, not_after: datetime.datetime) -> x509.Certificate:
    builder = (_builder(subject, ca_cert.subject, public_key, not_before, not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _sign(builder, ca_key)


def sign_server_csr(ca_cert: x509.Certificate, ca_key: PrivateKey, subject: x509.Name,
                    public_key: object, sans: list[x509.GeneralName],
                    not_before: datetime.datetime, not_after: datetime.datetime) -> x509.Certificate:
    """A server-auth certificate for someone else's key (trustd signing a node's CSR)."""
    return _leaf_cert(ca_cert, ca_key, subject, public_key, ExtendedKeyUsageOID.SERVER_AUTH, sans,
                      not_before, not_after)


def server_csr(key: PrivateKey, cn: str, names: Iterable[str]) -> x509.CertificateSigningRequest:
    """A CSR for a serving certificate: common name and SANs only, nothing else to ask for."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(cn))
    sans = _sans(names)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) \
        else hashes.SHA256()
    return builder.sign(key, algorithm)


def _sans(names: Iterable[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in names:
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name.split("%")[0])))
        except ValueError:
            sans.append(x509.DNSName(name))
    return sans


def new_client_cert(ca_cert: x509.Certificate, ca_key: PrivateKey, name: str, roles: Iterable[str],
                    *, days: int = 365, not_before: datetime.datetime | None = None,
                    not_after: datetime.datetime | None = None,
                    ) -> tuple[x509.Certificate, PrivateKey]:
    """A client certificate whose Organization values are its roles (os:admin, ...)."""
    now = _utcnow()
    return _leaf(ca_cert, ca_key, _name(name, roles), ExtendedKeyUsageOID.CLIENT_AUTH, [],
                 not_before or now - datetime.timedelta(hours=1),
                 not_after or now + datetime.timedelta(days=days))


def new_server_cert(ca_cert: x509.Certificate, ca_key: PrivateKey, names: Iterable[str],
                    *, days: int = 365) -> tuple[x509.Certificate, PrivateKey]:
    """A serving certificate for the node, valid for each DNS name or IP address in ``names``."""
    names = list(names)
    sans = _sans(names)
    now = _utcnow()
    cn = next((n for n in names if n and not _is_ip(n)), "talos-node")
    # A day back: a node whose clock lags a little still serves a valid certificate.
    return _leaf(ca_cert, ca_key, _name(cn), ExtendedKeyUsageOID.SERVER_AUTH, sans,
                 now - datetime.timedelta(days=1), now + datetime.timedelta(days=days))


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False
    return True


def check_pair(cert: x509.Certificate, key: PrivateKey, what: str) -> None:
    """Refuse a key that does not belong to the certificate (a common config mistake)."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    if (cert.public_key().public_bytes(serialization.Encoding.DER, fmt)
            != key.public_key().public_bytes(serialization.Encoding.DER, fmt)):
        raise PkiError(f"{what}: the key does not match the certificate")
