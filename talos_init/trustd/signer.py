"""What trustd agrees to sign: the checks on a node's CSR and the certificate made from it.

No I/O and no clock of its own (``now`` is passed in). The policy, and why:

- server auth only: a CSR asking for any other extended key usage (client
  auth above all) or for a CA is refused, and the certificate says server
  auth only, so it can never log in to another node's apid;
- no Organization: apid reads roles from the Organization, so a CSR that
  asks for one is refused (Talos strips it; refusing says why to whoever
  tried) and the subject signed is the common name alone;
- SANs a node may claim: the address the request came from (required, so a
  node cannot ask for another node's address), loopback addresses, and DNS
  names that are plain host names (no wildcard). IP SANs trustd cannot check
  (a worker's other addresses, ``machine.certSANs`` IPs) are refused;
- a bounded lifetime, so a leaked worker key stops working on its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from talos_init import pki

MAX_LIFETIME = datetime.timedelta(days=7)
MAX_SANS = 32
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class Refused(Exception):
    """The CSR breaks the policy; the message says which rule."""


@dataclass(frozen=True)
class Signed:
    cert: x509.Certificate
    sans: list[str]


def requester_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The peer's address as the node sees itself (an IPv4-mapped IPv6 address unmapped)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def check_csr(csr_pem: bytes, requester: str,
              ) -> tuple[x509.CertificateSigningRequest, list[x509.GeneralName]]:
    """The CSR and the SANs to sign, or Refused naming the rule broken."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise Refused(f"not a PEM certificate signing request ({e})") from None
    if not csr.is_signature_valid:
        raise Refused("the CSR's signature does not match its key")
    if csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        raise Refused("the CSR asks for an Organization: node certificates carry no role")
    sans: list[x509.GeneralName] = []
    for ext in csr.extensions:
        value = ext.value
        if isinstance(value, x509.ExtendedKeyUsage):
            other = [u for u in value if u != ExtendedKeyUsageOID.SERVER_AUTH]
            if other:
                names = ", ".join(getattr(u, "_name", u.dotted_string) for u in other)
                raise Refused(f"the CSR asks for {names}: trustd signs server auth only")
        elif isinstance(value, x509.BasicConstraints):
            if value.ca:
                raise Refused("the CSR asks to be a CA")
        elif isinstance(value, x509.SubjectAlternativeName):
            sans = list(value)
        elif isinstance(value, x509.KeyUsage):
            pass  # replaced by our own
        else:
            raise Refused(f"the CSR carries an extension trustd does not sign ({ext.oid.dotted_string})")
    if len(sans) > MAX_SANS:
        raise Refused(f"the CSR asks for {len(sans)} names, more than {MAX_SANS}")
    source = requester_ip(requester)
    found_source = False
    for san in sans:
        if isinstance(san, x509.IPAddress):
            ip = san.value
            if ip == source:
                found_source = True
            elif not ip.is_loopback:
                raise Refused(f"the CSR asks for address {ip}, which is not the address the request "
                              f"came from ({source}) nor loopback")
        elif isinstance(san, x509.DNSName):
            if not _HOSTNAME.match(san.value):
                raise Refused(f"the CSR asks for DNS name {san.value!r}: only plain host names "
                              "(no wildcard)")
        else:
            raise Refused(f"the CSR asks for a {type(san).__name__} name: only DNS names and IP "
                          "addresses")
    if not found_source:
        raise Refused(f"the CSR does not name the address the request came from ({source}) "
                      "among its IP addresses")
    return csr, sans


def sign(csr_pem: bytes, requester: str, ca_cert: x509.Certificate, ca_key: pki.PrivateKey,
         now: datetime.datetime, lifetime: datetime.timedelta) -> Signed:
    """A server-auth certificate for the CSR's key and checked SANs, valid ``lifetime`` from now."""
    if not datetime.timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError(f"lifetime {lifetime} out of bounds (0, {MAX_LIFETIME}]")
    csr, sans = check_csr(csr_pem, requester)
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else "talos-node"
    # A little back-dated for clocks behind ours, never by more than a tenth of the lifetime.
    skew = min(datetime.timedelta(minutes=5), lifetime / 10)
    cert = pki.sign_server_csr(ca_cert, ca_key, x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, cn)]), csr.public_key(), sans, now - skew, now + lifetime)
    return Signed(cert, [str(s.value) for s in sans])
