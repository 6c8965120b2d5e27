"""Finding the power button in sysfs and reading its presses from input events."""

import struct

from talos_init import powerbutton
from talos_init.powerbutton import EV_KEY, INPUT_EVENT, KEY_POWER

EV_SYN = 0


def _event(type_, code, value):
    return INPUT_EVENT.pack(1700000000, 5, type_, code, value)


def test_capabilities_bitmap_of_a_real_acpi_power_button():
    """The bitmap an ACPI power button shows in sysfs ('10000000000000 0') has KEY_POWER."""
    assert struct.calcsize("l") == 8  # the sample is from a 64-bit kernel
    assert powerbutton.has_key("10000000000000 0", KEY_POWER)
    assert not powerbutton.has_key("10000000000000 0", 115)
    assert not powerbutton.has_key("0", KEY_POWER)
    # A long bitmap with every bit of the second word from the right set except bit 52:
    assert not powerbutton.has_key("ffff ffefffffffffffff fffffffffffffffe", KEY_POWER)
    assert powerbutton.has_key("ffff fff0000000000000 0", KEY_POWER)


def test_find_power_buttons_in_a_sysfs_tree(tmp_path):
    """Only event devices whose key capabilities include KEY_POWER are returned, in order."""
    for name, caps in (("event0", "10000000000000 0"), ("event1", "3 0"),
                       ("event2", "10000000000000 0"), ("mouse0", "10000000000000 0")):
        (tmp_path / name / "device" / "capabilities").mkdir(parents=True)
        (tmp_path / name / "device" / "capabilities" / "key").write_text(caps + "\n")
    (tmp_path / "event3").mkdir()  # no capabilities: skipped
    assert powerbutton.find_power_buttons(tmp_path) == ["event0", "event2"]
    assert powerbutton.find_power_buttons(tmp_path / "missing") == []


def test_only_presses_count():
    """A press counts; its release, auto-repeat, SYN reports and other keys do not."""
    data = (_event(EV_KEY, KEY_POWER, 1) + _event(EV_SYN, 0, 0) + _event(EV_KEY, KEY_POWER, 2)
            + _event(EV_KEY, KEY_POWER, 0) + _event(EV_KEY, 30, 1))
    assert powerbutton.presses(data) == 1
    assert powerbutton.presses(data[:-3]) == 1  # a torn trailing event is ignored
