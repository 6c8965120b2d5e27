"""Which needed devices are still missing, from udev's device list."""

import pytest

from talos_init.devices import DevicesMissing, Need, parse_need, unmet

DEVICES = [("net", "lo", None), ("net", "eth0", None), ("block", "vda", "disk"),
           ("block", "vda1", "partition"), ("block", "loop0", "disk")]


def test_any_interface_but_loopback_satisfies_net():
    """'net' is met by eth0 and never by lo alone."""
    assert unmet([Need("net")], DEVICES) == []
    assert unmet([Need("net")], [("net", "lo", None)]) == [Need("net")]


def test_disk_needs_a_whole_non_virtual_disk():
    """'disk' ignores partitions and loop devices."""
    assert unmet([Need("disk")], DEVICES) == []
    assert unmet([Need("disk")], [("block", "loop0", "disk"), ("block", "vda1", "partition")]) \
        == [Need("disk")]


def test_named_need_matches_only_that_device():
    """'net:eth1' is missing while only eth0 exists."""
    assert unmet([parse_need("net:eth1"), parse_need("disk:vda")], DEVICES) == [Need("net", "eth1")]


def test_bad_need_is_rejected_with_its_text():
    """An unknown kind is an error naming the given text."""
    with pytest.raises(ValueError, match="'usb:x'"):
        parse_need("usb:x")


def test_timeout_message_names_every_missing_device():
    """The timeout error says how long it waited and what is missing, in words."""
    message = str(DevicesMissing([Need("net", "eth1"), Need("disk")], 60))
    assert message == ("after 60s still missing: network interface eth1; "
                       "a disk (not loop/ram/zram/nbd)")
