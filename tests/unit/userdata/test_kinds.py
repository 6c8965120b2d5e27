"""Every Talos document kind: known, parsed, and a wrong type named with path, line, column."""

from __future__ import annotations

import base64

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talos_init.userdata import talos_types, validate
from talos_init.userdata.schema import KIND_DOCS, NAMED_KINDS, OTHER_KINDS
from tests.unit.userdata.pki import CLUSTER_CA, fill
from tests.unit.userdata.test_validate_errors import BASE

V1 = fill(BASE.replace("#MACHINE\n", "").replace("#CLUSTER\n", ""))
# The same without what KubeClusterConfig and KubeAPIServerCAConfig carry in 1.15.
V1_BARE = fill(
    "version: v1alpha1\nmachine:\n    type: worker\n    token: 328hom.uqjzh6jnn2eie9oi\n"
    "    ca:\n        crt: @MACHINE_CRT@\n        key: \"\"\n"
    "cluster:\n    token: wlzjyw.bei2zfylhs2by0wd\n"
)
CLUSTER_PEM = base64.b64decode(CLUSTER_CA.crt).decode()

# The fields each acted-on kind cannot do without (Talos' Validate() asks for them too).
REQUIRED = {
    "KubeletConfig": {"image": "ghcr.io/siderolabs/kubelet:v1.34.0"},
    "LinkConfig": {"name": "eth0"},
    "DHCPv4Config": {"name": "eth0"},
    "VLANConfig": {"name": "eth0.5", "parent": "eth0", "vlanID": 5},
    "BondConfig": {"name": "bond0"},
    "StaticHostConfig": {"name": "10.0.0.9"},
    "RegistryMirrorConfig": {"name": "docker.io"},
    "RegistryTLSConfig": {"name": "r.example.org"},
    "RegistryAuthConfig": {"name": "r.example.org"},
    "KernelModuleConfig": {"name": "veth"},
    "LinkAliasConfig": {"name": "net0", "selector": {"match": 'link.driver == "e1000"'}},
}
# Two kinds carry what V1 sets already: they are shown beside V1_BARE, together.
CONFLICTING = {
    "KubeClusterConfig": {"clusterName": "c1", "endpoint": "https://10.0.2.15:6443"},
    "KubeAPIServerCAConfig": {"acceptedCAs": [CLUSTER_PEM]},
}


def _base(kind: str) -> str:
    """The v1alpha1 document (and the other 1.15 cluster document) a kind is shown beside."""
    if kind not in CONFLICTING:
        return V1 + "---\n"
    (other,) = set(CONFLICTING) - {kind}
    return V1_BARE + "---\n" + _doc(other, CONFLICTING[other]) + "---\n"


def _doc(kind: str, fields: dict) -> str:
    head = yaml.safe_dump({"apiVersion": "v1alpha1", "kind": kind}, sort_keys=False)
    return head + (yaml.safe_dump(fields, sort_keys=False) if fields else "")


def _wrong(code: object) -> object:
    """A value of the wrong YAML shape for a type code; None where anything goes."""
    if code == "a":
        return None
    if isinstance(code, str) and code in ("s", "i", "n", "b", "args"):
        return {"x": 1}
    return "7"  # a list, a mapping or a struct given a scalar


def test_every_talos_kind_is_known():
    """All kinds of the generated table (Talos 1.5-1.15) are acted on or accepted."""
    assert set(talos_types.KINDS) == set(KIND_DOCS) | set(OTHER_KINDS)
    assert len(talos_types.KINDS) >= 88
    for kind, spec in KIND_DOCS.items():
        talos_fields = set(talos_types.TYPES[talos_types.KINDS[kind]])
        assert set(spec.fields) <= talos_fields, f"{kind}: fields Talos does not have"


@pytest.mark.parametrize("kind", sorted(talos_types.KINDS))
def test_kind_parses_alone(kind):
    """A minimal document of each kind beside a v1alpha1 document is valid."""
    fields = REQUIRED.get(kind) or CONFLICTING.get(kind) or {}
    result = validate.parse(_base(kind) + _doc(kind, fields))
    assert result.errors == [], [p.format() for p in result.errors]


CASES = [
    (kind, field, code)
    for kind, tname in sorted(talos_types.KINDS.items())
    for field, code in sorted(talos_types.TYPES[tname].items())
    if field not in ("apiVersion", "kind") and _wrong(code) is not None
]


@pytest.mark.parametrize(("kind", "field", "code"), CASES, ids=[f"{k}.{f}" for k, f, _ in CASES])
def test_wrong_type_names_path_line_column(kind, field, code):
    """Every typed field of every kind: a value of the wrong shape is an error at its node."""
    fields = dict(REQUIRED.get(kind, {}))
    fields.pop(field, None)
    doc = _doc(kind, fields) + f"{field}: {yaml.safe_dump(_wrong(code), default_flow_style=True)}"
    text = _base(kind) + doc
    result = validate.parse(text)
    assert result.config is None
    name = fields.get("name") if kind in NAMED_KINDS else None
    prefix = kind if name is None else f"{kind}({name})"
    line = text.count("\n", 0, text.index(f"\n{field}: ")) + 2
    found = [p for p in result.errors if p.path.startswith(f"{prefix}.{field}")
             and p.message.startswith("expected")]
    assert found, [p.format() for p in result.problems]
    assert (found[0].line, found[0].column) == (line, len(field) + 3), found[0].format()


@pytest.mark.parametrize("kind", sorted(talos_types.KINDS))
def test_unknown_field_in_kind(kind):
    """A misspelt field is an error naming the kind and the closest known field."""
    fields = dict(REQUIRED.get(kind, {}))
    known = sorted(set(talos_types.TYPES[talos_types.KINDS[kind]]) - {"apiVersion", "kind"})
    typo = (known[0] + "x") if known else "colour"
    text = _base(kind) + _doc(kind, fields) + f"{typo}: 1\n"
    result = validate.parse(text)
    found = [p for p in result.errors if p.path.endswith(f".{typo}")]
    assert found and f"unknown field {typo!r} in {kind}" in found[0].message
    if known:
        assert f"did you mean {known[0]!r}" in found[0].message
    assert found[0].line == text.count("\n", 0, text.index(f"\n{typo}: ")) + 2


# Texts the acted-on fields' own types accept, so documents get past them into folding.
REALISTIC = st.sampled_from(["eth0", "eth1", "eth0.7", "10.0.0.1", "10.0.0.0/24", "fd00::1/64",
                             "https://10.0.2.15:6443", "http://10.0.2.2:5000", "node-a", "1"])


def _values(code: object, depth: int = 0, real: bool = False) -> st.SearchStrategy:
    if isinstance(code, list):
        return st.lists(_values(code[0], depth + 1, real), max_size=2)
    if isinstance(code, dict):
        keys = st.from_regex(r"[a-z]{1,3}(\.[a-z]{1,3})?", fullmatch=True)
        return st.dictionaries(keys, _values(code["*"], depth + 1, real), max_size=2)
    simple = {
        "s": REALISTIC if real else st.text(max_size=8),
        "i": st.integers(0, 10**6),
        "n": st.one_of(st.integers(0, 99), st.floats(0, 9, allow_nan=False)),
        "b": st.booleans(),
        "a": st.just({"free": ["form"]}),
        "args": st.one_of(st.text(max_size=4), st.lists(st.text(max_size=4), max_size=2)),
    }
    if code in simple:
        return simple[code]
    if depth > 3:
        return st.just({})
    fields = talos_types.TYPES[code]
    return st.fixed_dictionaries(
        {}, optional={f: _values(c, depth + 1, real) for f, c in fields.items()
                      if f not in ("apiVersion", "kind")}
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(OTHER_KINDS)).flatmap(
    lambda k: st.tuples(st.just(k), _values(talos_types.KINDS[k]))))
def test_well_typed_documents_of_other_kinds_are_accepted(kind_and_fields):
    """Any well-typed document of a kind not acted on is accepted with one notice."""
    kind, fields = kind_and_fields
    result = validate.parse(V1 + "---\n" + _doc(kind, fields))
    assert result.errors == [], [p.format() for p in result.errors]
    assert any(p.path.startswith(kind) for p in result.unsupported)


def test_secret_fields_of_the_kinds_are_marked():
    """The fields Talos' Redact() blanks carry secret=True (redaction walks the schema by it)."""
    def field(kind: str, *path: str):
        spec = (KIND_DOCS.get(kind) or OTHER_KINDS[kind])
        for name in path[:-1]:
            spec = spec.fields[name].spec
            while hasattr(spec, "item"):
                spec = spec.item
        return spec.fields[path[-1]]

    for kind, path in [
        ("KubeAPIServerCAConfig", ("issuingCA", "key")),
        ("KubeAggregatorCAConfig", ("issuingCA", "key")),
        ("KubeServiceAccountConfig", ("issuer", "privateKey")),
        ("KubeEtcdEncryptionConfig", ("config",)),
        ("DiscoveryIdentityConfig", ("clusterSecret",)),
        ("RegistryAuthConfig", ("password",)),
        ("RegistryAuthConfig", ("auth",)),
        ("RegistryAuthConfig", ("identityToken",)),
        ("RegistryTLSConfig", ("clientIdentity", "key")),
        ("HCloudVIPConfig", ("apiToken",)),
        ("WireguardConfig", ("privateKey",)),
        ("WireguardConfig", ("peers", "presharedKey")),
        ("SideroLinkConfig", ("apiUrl",)),
        ("SideroLinkConfig", ("uniqueToken",)),
        ("UserVolumeConfig", ("encryption", "keys", "static", "passphrase")),
    ]:
        assert field(kind, *path).secret, (kind, path)
    assert not field("RegistryAuthConfig", "username").secret
    assert not field("KubeAPIServerCAConfig", "issuingCA", "cert").secret


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(KIND_DOCS)).flatmap(
    lambda k: st.tuples(st.just(k), _values(talos_types.KINDS[k], real=True))), max_size=4))
def test_acted_kinds_never_crash_the_validator(docs):
    """Any mix of acted-on documents with Talos-typed values gives a config or problems:
    folding never raises, and a config's effective form loads as the consumers load it."""
    text = V1 + "".join("---\n" + _doc(kind, {**REQUIRED.get(kind, {}), **fields})
                        for kind, fields in docs)
    result = validate.parse(text)
    assert (result.config is None) == bool(result.errors)
    if result.config is not None:
        from talos_init.networkd.model import from_config

        from_config(result.config.effective)
