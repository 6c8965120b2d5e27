"""Property: any input gives a config or a list of errors, never an exception."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talos_init.userdata import validate
from tests.unit.userdata.pki import fill

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "v1alpha1",
            "controlplane",
            "worker",
            "10.0.0.0/8",
            "eth0",
            "0o644",
            "https://a:6443",
            "2001-12-14",
            "~",
            "yes",
            "0x1f",
        ]
    ),
)
keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "version",
            "machine",
            "cluster",
            "type",
            "token",
            "ca",
            "crt",
            "key",
            "network",
            "interfaces",
            "interface",
            "dhcp",
            "addresses",
            "routes",
            "vlans",
            "vlanId",
            "mtu",
            "kind",
            "apiVersion",
            "hostname",
            "kubelet",
            "extraMounts",
            "files",
            "controlPlane",
            "endpoint",
            "podSubnets",
            "cni",
            "nameservers",
        ]
    ),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)


def _check(result: validate.Result) -> None:
    assert isinstance(result, validate.Result)
    if result.config is None:
        assert result.errors, "no config must come with at least one error"
    else:
        assert not result.errors
    for p in result.problems:
        assert p.line >= 1 and p.column >= 1 and p.path and p.message


@SETTINGS
@given(st.text(max_size=400))
def test_arbitrary_text(text):
    """Any text, YAML or not, is a config or errors."""
    _check(validate.parse(text))


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data):
    """Any bytes, including invalid UTF-8, are a config or errors."""
    _check(validate.parse(data))


@SETTINGS
@given(st.lists(trees, min_size=1, max_size=3))
def test_arbitrary_yaml_documents(docs):
    """Arbitrary YAML structures, in one or several documents, are a config or errors."""
    _check(validate.parse(yaml.safe_dump_all(docs)))


BASE = fill("""version: v1alpha1
machine:
    type: worker
    token: 328hom.uqjzh6jnn2eie9oi
    ca: {crt: @MACHINE_CRT@}
    network:
        interfaces:
            - interface: eth0
              dhcp: true
              routes: [{network: 10.0.0.0/8, gateway: 10.0.0.1}]
              vlans: [{vlanId: 5}]
cluster:
    controlPlane: {endpoint: "https://10.0.2.15:6443"}
    token: wlzjyw.bei2zfylhs2by0wd
    ca: {crt: @CLUSTER_CRT@}
""")


def _paths(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, prefix + (i,))


@SETTINGS
@given(st.data())
def test_mutated_valid_config(data):
    """A valid config with one subtree replaced by arbitrary data is a config or errors."""
    doc = yaml.safe_load(BASE)
    path = data.draw(st.sampled_from([p for p in _paths(doc) if p]))
    target = doc
    for seg in path[:-1]:
        target = target[seg]
    target[path[-1]] = data.draw(trees)
    _check(validate.parse(yaml.safe_dump(doc)))


def test_base_of_mutations_is_valid():
    """The config the mutation test starts from is itself valid (so mutations test something)."""
    assert validate.parse(BASE).ok
