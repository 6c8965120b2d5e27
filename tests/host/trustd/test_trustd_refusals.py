"""trustd signs a worker's serving certificate only with the token and only server auth."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from talos_init import pki
from talos_init.apid.protocol import ApiError

from .conftest import TOKEN, start_trustd, stop


def _csr_with(key, *, orgs=(), usages=None, names=("127.0.0.1",)) -> str:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, "worker-1")]))
    b = b.add_extension(x509.SubjectAlternativeName(
        [x509.IPAddress(__import__("ipaddress").ip_address(n)) for n in names]), critical=False)
    if usages:
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _refusal(trustd, params, raw=None) -> ApiError:
    with pytest.raises(ApiError) as e:
        trustd.ask(params, raw=raw)
    return e.value


def test_signs_server_auth_without_organization_and_logs_the_requester(trustd):
    """A good CSR comes back signed by the machine CA: server auth only, no O, bounded life."""
    key = pki.new_key()
    result = trustd.ask({"token": TOKEN, "csr": trustd.csr(["127.0.0.1", "::1", "worker-1"], key=key)})
    cert = x509.load_pem_x509_certificate(result["crt"].encode())
    cert.verify_directly_issued_by(trustd.ca)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=1, minutes=5)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(v) for v in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    log = trustd.log.read_text()
    assert "trustd_signed" in log and "peer=127.0.0.1" in log, log


def test_no_token_is_refused(trustd):
    """A request without the machine token is refused, nothing signed."""
    e = _refusal(trustd, {"csr": trustd.csr(["127.0.0.1"])})
    assert e.code == "permission_denied" and "no machine token" in e.message
    assert "trustd_signed" not in trustd.log.read_text()


def test_wrong_token_is_refused(trustd):
    """A token that is not this cluster's is refused and the refusal names the peer."""
    e = _refusal(trustd, {"token": "abcdef.0000000000000000", "csr": trustd.csr(["127.0.0.1"])})
    assert e.code == "permission_denied" and "wrong machine token" in e.message
    log = trustd.log.read_text()
    assert "trustd_refused" in log and "peer=127.0.0.1" in log
    assert "trustd_signed" not in log


def test_csr_asking_for_client_auth_is_refused(trustd):
    """A CSR with client auth among its usages would make a login certificate: refused."""
    csr = _csr_with(pki.new_key(), usages=[ExtendedKeyUsageOID.SERVER_AUTH,
                                           ExtendedKeyUsageOID.CLIENT_AUTH])
    e = _refusal(trustd, {"token": TOKEN, "csr": csr})
    assert e.code == "permission_denied" and "server auth only" in e.message, e.message


def test_csr_asking_for_an_organization_is_refused(trustd):
    """An Organization is a role to apid: a CSR asking for os:admin is refused."""
    e = _refusal(trustd, {"token": TOKEN, "csr": _csr_with(pki.new_key(), orgs=["os:admin"])})
    assert e.code == "permission_denied" and "Organization" in e.message


def test_csr_claiming_another_address_is_refused(trustd):
    """IP SANs are the requester's own address and loopback only."""
    e = _refusal(trustd, {"token": TOKEN, "csr": trustd.csr(["127.0.0.1", "10.9.8.7"])})
    assert "10.9.8.7" in e.message and "not the address the request came from" in e.message
    e = _refusal(trustd, {"token": TOKEN, "csr": trustd.csr(["worker-1"])})
    assert "does not name the address the request came from" in e.message


def test_oversized_request_is_refused(trustd):
    """A request line over 16 KiB is answered too_large, not read into memory."""
    csr = trustd.csr(["127.0.0.1"]) + "x" * 20000
    e = _refusal(trustd, {"token": TOKEN, "csr": csr})
    assert e.code == "too_large"


def test_too_many_requests_are_refused(tmp_path, machine_ca):
    """After its burst an address is refused until the bucket refills, even with the token."""
    t = start_trustd(tmp_path, *machine_ca, "--burst", "2", "--per-second", "0.001")
    try:
        for _ in range(2):
            t.ask({"token": TOKEN, "csr": t.csr(["127.0.0.1"])})
        e = _refusal(t, {"token": TOKEN, "csr": t.csr(["127.0.0.1"])})
        assert e.code == "overloaded" and "too many requests from 127.0.0.1" in e.message
    finally:
        stop(t.process)


def test_refused_requests_use_up_the_burst_too(tmp_path, machine_ca):
    """Wrong tokens count: after the burst even the right token is refused (no fast guessing)."""
    t = start_trustd(tmp_path, *machine_ca, "--burst", "2", "--per-second", "0.001")
    try:
        for _ in range(2):
            assert _refusal(t, {"token": "guess00.0000000000000000",
                                "csr": t.csr(["127.0.0.1"])}).code == "permission_denied"
        e = _refusal(t, {"token": TOKEN, "csr": t.csr(["127.0.0.1"])})
        assert e.code == "overloaded"
    finally:
        stop(t.process)
