"""The ACPI power button: a press asks for a power-off, as systemd-logind does.

The kernel reports the power button (QEMU's ``system_powerdown``) as an input
device with KEY_POWER, not as a signal to PID 1, so PID 1 reads the device
itself. Devices are found through sysfs; the ``button`` module may load after
PID 1 starts, so an empty scan is retried with backoff for a while.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

from talos_init.log import get_logger
from talos_init.loop import Loop

log = get_logger("powerbutton")

EV_KEY = 1
KEY_POWER = 116
# struct input_event on 64-bit Linux: timeval (two longs), u16 type, u16 code, s32 value.
INPUT_EVENT = struct.Struct("llHHi")
RESCAN_DELAYS = (1, 2, 4, 8, 15, 30, 60, 60, 60, 60)  # about five minutes, then give up


def has_key(capabilities: str, code: int) -> bool:
    """Whether a sysfs ``capabilities/key`` bitmap has ``code``.

    The bitmap is hex words of the kernel's ``long``, most significant first.
    """
    words = capabilities.split()
    bits = 8 * struct.calcsize("l")
    index, bit = divmod(code, bits)
    if index >= len(words):
        return False
    return bool(int(words[-1 - index], 16) >> bit & 1)


def find_power_buttons(sys_class_input: Path = Path("/sys/class/input")) -> list[str]:
    """Names (``event3``) of input devices that can send KEY_POWER."""
    found: list[str] = []
    try:
        entries = sorted(os.listdir(sys_class_input))
    except OSError:
        return found
    for name in entries:
        if not name.startswith("event"):
            continue
        try:
            caps = (sys_class_input / name / "device/capabilities/key").read_text()
        except OSError:
            continue
        if has_key(caps, KEY_POWER):
            found.append(name)
    return found


def presses(data: bytes) -> int:
    """How many KEY_POWER presses (not releases or repeats) ``data`` holds."""
    count = 0
    usable = len(data) - len(data) % INPUT_EVENT.size
    for _sec, _usec, type_, code, value in INPUT_EVENT.iter_unpack(data[:usable]):
        if type_ == EV_KEY and code == KEY_POWER and value == 1:
            count += 1
    return count


class PowerButton:
    """Watches power-button devices from the loop; calls ``on_press()`` on each press."""

    def __init__(self, loop: Loop, on_press: Callable[[], object],
                 sys_class_input: Path = Path("/sys/class/input"),
                 dev_input: Path = Path("/dev/input")):
        self.loop = loop
        self.on_press = on_press
        self.sys_class_input = sys_class_input
        self.dev_input = dev_input
        self.fds: dict[str, int] = {}

    def start(self) -> None:
        self._scan(0)

    def watch_fd(self, name: str, fd: int) -> None:
        """Read input events from ``fd`` (non-blocking) in the loop."""
        self.fds[name] = fd
        self.loop.add_reader(fd, self._on_readable, name, fd)

    def _scan(self, attempt: int) -> None:
        for name in find_power_buttons(self.sys_class_input):
            if name in self.fds:
                continue
            try:
                fd = os.open(self.dev_input / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                log.warning("power_button_unreadable", device=name, error=str(e))
                continue
            log.info("power_button_watched", device=name)
            self.watch_fd(name, fd)
        # Keep scanning even once one device is watched: udev's coldplug loads the ACPI button
        # driver, whose fixed-feature button can appear after another KEY_POWER device, and
        # QEMU's system_powerdown goes to that one (a 300 s hang in the e2e power-off test).
        if attempt < len(RESCAN_DELAYS):
            self.loop.call_later(RESCAN_DELAYS[attempt], self._scan, attempt + 1)
        elif not self.fds:
            log.warning("power_button_not_found", reason="no input device with KEY_POWER")

    def _on_readable(self, name: str, fd: int) -> None:
        try:
            data = os.read(fd, INPUT_EVENT.size * 64)
        except BlockingIOError:
            return
        except OSError as e:
            data = b""
            log.warning("power_button_read_failed", device=name, error=str(e))
        if not data:  # device gone (or EOF on a pipe): stop watching it
            self.loop.remove_reader(fd)
            os.close(fd)
            self.fds.pop(name, None)
            return
        if presses(data):
            log.info("power_button_pressed", device=name)
            self.on_press()

    def close(self) -> None:
        for fd in self.fds.values():
            self.loop.remove_reader(fd)
            os.close(fd)
        self.fds.clear()
