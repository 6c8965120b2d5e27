"""Finding the power button in sysfs and reading its presses from input events."""

import os
import struct

from talos_init import powerbutton
from talos_init.loop import Loop
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


def _sysfs_button(sys_class_input, name):
    caps = sys_class_input / name / "device" / "capabilities"
    caps.mkdir(parents=True)
    (caps / "key").write_text("10000000000000 0\n")


def _device_node(dev_input, name):
    """A FIFO standing in for /dev/input/eventN; the returned fd writes events into it."""
    os.mkfifo(dev_input / name)
    return os.open(dev_input / name, os.O_RDWR | os.O_NONBLOCK)


def test_a_button_appearing_after_start_is_found_through_its_dev_node(tmp_path):
    """No /dev/input at start; the node appearing later (the button module loaded by coldplug)
    is watched, and a press on it asks for a power-off."""
    sysfs, dev_input = tmp_path / "sys", tmp_path / "dev" / "input"
    sysfs.mkdir()
    dev_input.parent.mkdir()
    loop, pressed = Loop(), []
    button = powerbutton.PowerButton(loop, lambda: pressed.append(1), sysfs, dev_input)
    button.start()
    try:
        assert button.fds == {} and button.not_found is not None
        dev_input.mkdir()
        _sysfs_button(sysfs, "event2")
        writer = _device_node(dev_input, "event2")
        assert loop.run_until(lambda: "event2" in button.fds, timeout=5)
        assert button.not_found is None  # the "not found" warning is called off
        os.write(writer, _event(EV_KEY, KEY_POWER, 1))
        assert loop.run_until(lambda: pressed, timeout=5)
        os.close(writer)
    finally:
        button.close()
        loop.close()


def test_a_watched_button_costs_no_loop_wake_ups_while_idle(tmp_path):
    """Once started, nothing wakes the loop until a device appears or a key is pressed: no
    timer is armed, and the only descriptors watched are the button and /dev/input's inotify,
    neither readable while nothing happens."""
    sysfs, dev_input = tmp_path / "sys", tmp_path / "dev" / "input"
    dev_input.mkdir(parents=True)
    _sysfs_button(sysfs, "event0")
    writer = _device_node(dev_input, "event0")
    loop = Loop()
    button = powerbutton.PowerButton(loop, lambda: None, sysfs, dev_input)
    button.start()
    try:
        assert list(button.fds) == ["event0"]
        assert button.not_found is None and loop.pending_timers() == 0
        watched = set(loop._selector.get_map()) - {loop._wake_r}  # the loop's own signal pipe
        assert watched == {button.fds["event0"], button.inotify}
        assert loop._selector.select(0) == []  # nothing to read: the loop would sleep
        os.write(writer, _event(EV_SYN, 0, 0))  # the check above can see a readable one
        assert [key.fd for key, _ in loop._selector.select(0)] == [button.fds["event0"]]
    finally:
        os.close(writer)
        button.close()
        loop.close()
