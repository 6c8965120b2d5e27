"""osctl picks whom to talk to and where, as the docs say."""

import argparse

import pytest

from talos_init.osctl.__main__ import targets
from talos_init.osctl.client import Context, OsctlError, split_hostport


@pytest.mark.parametrize("text, expected", [
    ("10.0.0.1", ("10.0.0.1", 50000)), ("node1:50001", ("node1", 50001)),
    ("[fd00::1]:7", ("fd00::1", 7)), ("[fd00::1]", ("fd00::1", 50000)), ("fd00::1", ("fd00::1", 50000)),
])
def test_host_and_port(text, expected):
    """Hosts, ports and bracketed IPv6 addresses split the usual way, 50000 by default."""
    assert split_hostport(text) == expected


def test_bad_port_is_named():
    """A port that is not a number is an error quoting the target."""
    with pytest.raises(OsctlError, match="'node:http': port must be a number"):
        split_hostport("node:http")


def test_flags_win_over_the_context():
    """-n beats -e, which beats the context's nodes, which beat its endpoints."""
    ctx = Context("c", endpoints=["e1"], nodes=["n1"])
    ns = lambda n, e: argparse.Namespace(nodes=n, endpoints=e)  # noqa: E731
    assert targets(ns(["a,b"], ["x"]), ctx) == ["a", "b"]
    assert targets(ns([], ["x"]), ctx) == ["x"]
    assert targets(ns([], []), ctx) == ["n1"]
    assert targets(ns([], []), Context("c", endpoints=["e1"])) == ["e1"]
    with pytest.raises(OsctlError, match="no node to talk to"):
        targets(ns([], []), Context("c"))
