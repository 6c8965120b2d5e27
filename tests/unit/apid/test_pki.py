"""Certificates and keys as Talos writes them in the machine config."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from talos_init import pki
from talos_init.apid import node_pki


def _talos_ed25519_ca():
    """A CA like Talos makes: Ed25519, key PEM labelled 'ED25519 PRIVATE KEY'."""
    import datetime

    from cryptography import x509

    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "talos")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, None))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).replace(b"PRIVATE KEY", b"ED25519 PRIVATE KEY")
    return cert, pem


def test_talos_style_ed25519_ca_signs_a_serving_cert():
    """A base64 PEM Ed25519 CA with Talos' key label is read and signs a serving certificate."""
    cert, key_pem = _talos_ed25519_ca()
    config = {"machine": {"ca": {"crt": base64.b64encode(pki.cert_pem(cert)).decode(),
                                 "key": base64.b64encode(key_pem).decode()}}}
    ca = node_pki.machine_ca(config, "config.json")
    served, _ = pki.new_server_cert(cert, ca.key, ["node1", "10.0.2.15", "fe80::1%eth0"])
    served.verify_directly_issued_by(cert)
    sans = served.extensions.get_extension_for_class(pki.x509.SubjectAlternativeName).value
    assert [str(v) for v in sans] and "10.0.2.15" in {str(ip) for ip in sans.get_values_for_type(
        pki.x509.IPAddress)}


@pytest.mark.parametrize("ca, words", [
    ({}, "machine.ca.crt is missing"),
    ({"crt": "x"}, "machine.ca.key is missing"),
    ({"crt": "bm90IHBlbQ==", "key": "x"}, "base64 decodes to something that is not PEM"),
    ({"crt": "!!!", "key": "x"}, "neither PEM nor base64"),
])
def test_bad_machine_ca_is_named(ca, words):
    """A missing or malformed machine CA is an error naming the field."""
    with pytest.raises(pki.PkiError, match=words):
        node_pki.machine_ca({"machine": {"ca": ca}}, "config.json")


def test_mismatched_ca_key_is_refused():
    """A CA key that is not the certificate's own is refused before anything is signed."""
    cert, _ = pki.new_ca("a")
    _, other_key = pki.new_ca("b")
    config = {"machine": {"ca": {"crt": pki.encode_field(pki.cert_pem(cert)),
                                 "key": pki.encode_field(pki.key_pem(other_key))}}}
    with pytest.raises(pki.PkiError, match="does not match"):
        node_pki.machine_ca(config, "config.json")
