"""apid's slot decisions, without a socket: handshakes per address, connections per certificate."""

from __future__ import annotations

from talos_init.apid.admission import Admission, Caps


def test_one_address_beyond_its_share_replaces_its_handshake_that_got_least_far():
    """At its cap an address loses its silent handshake before a talking one, oldest first."""
    a = Admission(Caps(max_handshakes=10, handshakes_per_source=3))
    evicted: list[str] = []
    other = a.begin_handshake("10.0.0.1", lambda: evicted.append("other"))
    ta, tb, tc = (a.begin_handshake("10.0.0.9", lambda n=n: evicted.append(n)) for n in "abc")
    a.touch("10.0.0.9", ta, 2)  # "a" sent a whole ClientHello
    a.touch("10.0.0.9", tc, 1)  # "c" sent half of one
    a.begin_handshake("10.0.0.9", lambda: evicted.append("d"))  # "b" never spoke: it goes
    a.begin_handshake("10.0.0.9", lambda: evicted.append("e"))  # then "d", silent and oldest
    a.begin_handshake("10.0.0.9", lambda: evicted.append("f"))  # "e"
    assert evicted == ["b", "d", "e"]
    assert (a.handshakes("10.0.0.9"), a.handshakes("10.0.0.1"), other) == (3, 1, other)


def test_full_pool_evicts_the_quietest_handshake_of_the_busiest_address():
    """With every slot taken, a newcomer drops the busiest address's quietest handshake."""
    a = Admission(Caps(max_handshakes=4, handshakes_per_source=3))
    evicted: list[str] = []
    for name in ("b1", "b2", "b3"):
        a.begin_handshake("busy", lambda n=name: evicted.append(n))
    a.begin_handshake("quiet", lambda: evicted.append("q1"))
    assert a.begin_handshake("new", lambda: evicted.append("n1")) is not None
    assert evicted == ["b1"]
    assert (a.handshakes(), a.handshakes("busy"), a.handshakes("new")) == (4, 2, 1)


def test_ended_handshakes_free_their_slot_once():
    """Ending a handshake twice (done, then the connection closes) frees one slot."""
    a = Admission(Caps(max_handshakes=2, handshakes_per_source=2))
    t = a.begin_handshake("x", lambda: None)
    a.end_handshake("x", t)
    a.end_handshake("x", t)
    assert a.handshakes() == 0 and a.handshakes("x") == 0


def test_admins_keep_their_reserve_and_one_certificate_cannot_take_all():
    """Non-admins stop at max minus the reserve and at the per-certificate cap; admins go on."""
    a = Admission(Caps(max_connections=6, connections_per_client=3, admin_reserve=2))
    assert [a.admit("reader1", False) for _ in range(3)] == [None] * 3
    assert "your certificate already has 3" in a.admit("reader1", False)
    assert a.admit("reader2", False) is None
    assert "kept for admins" in a.admit("reader3", False)
    assert a.admit("admin", True) is None and a.admit("admin", True) is None
    assert "all 6 connections" in a.admit("admin", True)
    for who in ("reader1", "reader1", "admin"):
        a.release(who)
    assert a.admit("reader3", False) is None


def test_follows_per_certificate_with_a_reserve_for_admins():
    """Follows stop at the per-certificate cap and, for non-admins, before the admins' reserve."""
    a = Admission(Caps(max_follows=6, follows_per_client=3, follow_admin_reserve=2))
    assert [a.open_follow("r1", False) for _ in range(3)] == [None] * 3
    assert "already has 3 follow streams" in a.open_follow("r1", False)
    assert a.open_follow("r2", False) is None
    assert "non-admin clients are in use" in a.open_follow("r3", False)
    assert a.open_follow("adm", True) is None and a.open_follow("adm", True) is None
    assert "any client" in a.open_follow("adm2", True)
    a.close_follow("r1")
    a.close_follow("adm")
    assert a.open_follow("adm2", True) is None and a.follows == 5
