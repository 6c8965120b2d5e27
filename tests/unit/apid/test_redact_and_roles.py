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
        "ls", "read", "config", "image.import", "upgrade", "rollback", "reset",
        "apply-config", "config.raw"}
    assert {n for n, m in METHODS.items() if OPERATOR not in m.roles} == {
        "ls", "read", "config", "image.import", "upgrade", "rollback", "reset",
        "apply-config", "config.raw"}


def test_roles_come_from_organization_values():
    """Only os:* Organization values count as roles; the common name does not."""
    cert = {"subject": ((("organizationName", "os:reader"),), (("organizationName", "dev"),),
                        (("commonName", "os:admin"),))}
    assert roles_of(cert) == {"os:reader"}
    assert roles_of(None) == set()



def _inner(spec):
    """Through lists, maps and the generated table's lazy types to what holds the fields."""
    from talos_init.userdata import schema
    from talos_init.userdata.spec import ListOf, MapOf

    while True:
        if isinstance(spec, (ListOf, MapOf)):
            spec = spec.item if isinstance(spec, ListOf) else spec.value
        elif isinstance(spec, schema.LazyTalos):
            spec = schema.talos_spec(spec.type_name)
        else:
            return spec


def _leaves(spec, prefix="", under_secret=False, depth=0):
    """(path, name, field, whether a field above it is secret) for every field that is no Struct."""
    from talos_init.userdata.spec import Struct

    spec = _inner(spec)
    if isinstance(spec, Struct) and depth < 12:
        for name, fld in spec.fields.items():
            if not isinstance(_inner(fld.spec), Struct):
                yield f"{prefix}.{name}", name, fld, under_secret
            yield from _leaves(fld.spec, f"{prefix}.{name}", under_secret or fld.secret, depth + 1)


def test_every_field_named_like_a_secret_is_marked_secret_in_the_schema():
    """A value field called key, token, password, ... carries secret=True, in every document kind."""
    from talos_init.apid.redact import is_secret_name
    from talos_init.userdata import schema

    specs = {"v1alpha1": schema.V1ALPHA1, **schema.OTHER_KINDS, **schema.KIND_DOCS}
    unmarked = [path for kind, spec in specs.items() for path, name, fld, above in _leaves(spec, kind)
                if is_secret_name(name) and not (fld.secret or above)]
    assert unmarked == [], unmarked

def test_redaction_follows_the_schema_flag_and_hides_url_userinfo():
    """A secret field's leaves are hidden with its keys kept; URL passwords go in any string."""
    config = {"cluster": {"extraManifestHeaders": {"X-Token": "a", "Accept": "b"},
                          "inlineManifests": [{"name": "n", "contents": "c"}],
                          "network": {"cni": {"urls": ["https://u:p@cni.test/x.yaml"]}}},
              "machine": {"registries": {"config": {"r.test": {"auth": {"username": "u",
                                                                         "auth": "A"}}}},
                          "install": {"image": "ghcr.io/x:1"}}}
    out = redact(config)
    assert out["cluster"]["extraManifestHeaders"] == {"X-Token": REDACTED, "Accept": REDACTED}
    assert out["cluster"]["inlineManifests"] == [{"name": "n", "contents": REDACTED}]
    assert out["cluster"]["network"]["cni"]["urls"] == [f"https://{REDACTED}@cni.test/x.yaml"]
    assert out["machine"]["registries"]["config"]["r.test"]["auth"] == {"username": "u",
                                                                        "auth": REDACTED}
    assert out["machine"]["install"] == {"image": "ghcr.io/x:1"}
