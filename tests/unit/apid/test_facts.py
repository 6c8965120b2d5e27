"""Parsers of /proc and /dev/kmsg text, fed samples from a real kernel."""

from talos_init.apid import facts


def test_kmsg_record_is_parsed():
    """A kmsg record gives sequence, seconds, level, facility and message; continuation lines dropped."""
    rec = b"6,339,5140900,-;NET: Registered protocol family 10\n SUBSYSTEM=net\n"
    assert facts.parse_kmsg(rec) == {"seq": 339, "t": 5.1409, "level": "info", "facility": "kern",
                                     "msg": "NET: Registered protocol family 10"}
    assert facts.parse_kmsg(b"30,1,2,-;udevd started\n")["facility"] == "daemon"
    assert facts.parse_kmsg(b"garbage") is None


def test_meminfo_in_bytes():
    """kB values become bytes, unit-less counters stay as they are."""
    text = "MemTotal:        2048 kB\nHugePages_Total:       3\nBroken\n"
    assert facts.parse_meminfo(text) == {"MemTotal": 2048 * 1024, "HugePages_Total": 3}


def test_mountinfo_with_escapes_and_optional_fields():
    """Targets with escaped spaces and optional fields before the separator parse correctly."""
    text = ("36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"
            "22 1 0:21 / /proc rw,nosuid - proc proc rw\n")
    assert facts.parse_mountinfo(text) == [
        {"source": "/dev/root", "target": "/mnt/my disk", "fstype": "ext3",
         "options": "rw,noatime,rw,errors=continue"},
        {"source": "proc", "target": "/proc", "fstype": "proc", "options": "rw,nosuid,rw"}]


def test_ipv4_routes():
    """Little-endian hex destinations, gateways and masks become dotted quads with a prefix."""
    text = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
            "eth0\t00000000\t0202000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
            "eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    assert [(r["destination"], r["gateway"], r["metric"]) for r in facts.parse_route(text)] == [
        ("0.0.0.0/0", "10.0.2.2", 100), ("10.0.2.0/24", None, 0)]


def test_ipv6_routes_skip_local_entries():
    """Routes on lo without the gateway flag are the kernel's local table and are left out."""
    text = ("fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
            "00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n"
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
            "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n")
    assert facts.parse_ipv6_route(text) == [{"family": "inet6", "destination": "fe80::/64",
                                             "gateway": None, "interface": "eth0", "metric": 256,
                                             "flags": 1}]


def test_list_dir_depth_and_limit(tmp_path):
    """ls goes down to the depth asked, stops at the entry limit and refuses relative paths."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep").write_text("x")
    (tmp_path / "top").symlink_to("a")
    names = [e["path"] for e in facts.list_dir(str(tmp_path), depth=2)]
    assert names == [str(tmp_path / "a"), str(tmp_path / "a" / "b"), str(tmp_path / "top")]
    assert facts.list_dir(str(tmp_path), depth=1)[1]["link"] == "a"
    assert len(facts.list_dir(str(tmp_path), depth=3, limit=2)) == 2
    try:
        facts.list_dir("etc")
    except ValueError as e:
        assert "absolute" in str(e)
    else:
        raise AssertionError("relative path accepted")


def test_protobuf_fields_round_trip():
    """Hand-written protobuf: varints, strings and nested messages decode to what was encoded."""
    from talos_init.apid.containerd import decode, field

    msg = field(1, "ctr") + field(3, 4242) + field(4, 2) + field(2, field(1, "nested")) + field(3, 300)
    out = decode(msg)
    assert out[1] == [b"ctr"] and out[3] == [4242, 300] and out[4] == [2]
    assert decode(out[2][0]) == {1: [b"nested"]}
    import pytest

    with pytest.raises(ValueError, match="truncated"):
        decode(field(1, "abc")[:-1])
