"""Secrets are redacted wherever they sit; the role table matches Talos' three roles."""

from talos_init.apid.protocol import ADMIN, METHODS, OPERATOR, READER
from talos_init.apid.redact import REDACTED, redact
from talos_init.apid.server import roles_of


def test_secret_fields_are_redacted_at_any_depth():
    """key, token, secret and private keys are redacted; crt, publicKey and empty values stay."""
    config = {"machine": {"token": "t", "ca": {"crt": "C", "key": "K"},
                          "network": {"interfaces": [{"wireguard": {"privateKey": "P",
                                                                    "publicKey": "Q"}}]},
                          "env": {"AWS_SECRET_ACCESS_KEY": "s"}},
              "cluster": {"secretboxEncryptionSecret": "x", "ca": {"crt": "C2", "key": ""},
                          "serviceAccount": {"key": "S"}, "clusterName": "demo"}}
    out = redact(config)
    assert out["machine"]["token"] == out["machine"]["ca"]["key"] == REDACTED
    assert out["machine"]["network"]["interfaces"][0]["wireguard"] == {"privateKey": REDACTED,
                                                                      "publicKey": "Q"}
    assert out["machine"]["env"]["AWS_SECRET_ACCESS_KEY"] == REDACTED
    assert out["cluster"]["secretboxEncryptionSecret"] == out["cluster"]["serviceAccount"]["key"] == REDACTED
    assert out["cluster"]["ca"] == {"crt": "C2", "key": ""}
    assert out["cluster"]["clusterName"] == "demo" and config["machine"]["token"] == "t"


def test_roles_nest_reader_operator_admin():
    """Every reader call is open to operators, every operator call to admins, and the named ones are gated."""
    for name, method in METHODS.items():
        if READER in method.roles:
            assert OPERATOR in method.roles, name
        if OPERATOR in method.roles:
            assert ADMIN in method.roles, name
    assert {n for n, m in METHODS.items() if READER not in m.roles} == {
        "reboot", "shutdown", "service.start", "service.stop", "service.restart",
        "ls", "read", "config", "image.import", "apply-config", "config.raw"}
    assert {n for n, m in METHODS.items() if OPERATOR not in m.roles} == {
        "ls", "read", "config", "image.import", "apply-config", "config.raw"}


def test_roles_come_from_organization_values():
    """Only os:* Organization values count as roles; the common name does not."""
    cert = {"subject": ((("organizationName", "os:reader"),), (("organizationName", "dev"),),
                        (("commonName", "os:admin"),))}
    assert roles_of(cert) == {"os:reader"}
    assert roles_of(None) == set()
