"""Power-button input events read through the loop ask for exactly one power-off per press."""

import os

from talos_init.loop import Loop
from talos_init.powerbutton import EV_KEY, INPUT_EVENT, KEY_POWER, PowerButton


def test_press_on_the_device_fd_calls_on_press_from_the_loop(tmp_path):
    """A pipe carrying real input_event records stands in for /dev/input/eventN."""
    loop = Loop()
    pressed = []
    button = PowerButton(loop, lambda: pressed.append(True), tmp_path, tmp_path)
    r, w = os.pipe2(os.O_NONBLOCK)
    button.watch_fd("event0", r)
    os.write(w, INPUT_EVENT.pack(1, 0, EV_KEY, KEY_POWER, 1) + INPUT_EVENT.pack(1, 0, 0, 0, 0))
    assert loop.run_until(lambda: pressed, timeout=10)
    os.write(w, INPUT_EVENT.pack(1, 0, EV_KEY, KEY_POWER, 0))  # release: nothing
    os.close(w)  # EOF: the device went away, it is no longer watched
    assert loop.run_until(lambda: not button.fds, timeout=10)
    assert pressed == [True]
    loop.close()


def test_scan_opens_the_device_named_in_sysfs(tmp_path):
    """start() finds eventN in the sysfs tree and reads /dev/input/eventN (here a FIFO)."""
    sys_input, dev_input = tmp_path / "sys", tmp_path / "dev"
    (sys_input / "event4" / "device" / "capabilities").mkdir(parents=True)
    (sys_input / "event4" / "device" / "capabilities" / "key").write_text("10000000000000 0\n")
    dev_input.mkdir()
    os.mkfifo(dev_input / "event4")
    loop = Loop()
    pressed = []
    button = PowerButton(loop, lambda: pressed.append(True), sys_input, dev_input)
    button.start()
    assert list(button.fds) == ["event4"]
    w = os.open(dev_input / "event4", os.O_WRONLY | os.O_NONBLOCK)
    os.write(w, INPUT_EVENT.pack(1, 0, EV_KEY, KEY_POWER, 1))
    assert loop.run_until(lambda: pressed, timeout=10)
    os.close(w)
    button.close()
    loop.close()
