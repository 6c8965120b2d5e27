"""The ACPI power button: a press asks for a power-off, as systemd-logind does.

The kernel reports the power button (QEMU's ``system_powerdown``) as an input
device with KEY_POWER, not as a signal to PID 1, so PID 1 reads the device
itself. Devices are found through sysfs; the ``button`` module may load after
PID 1 starts (udev's coldplug), so PID 1 scans again whenever a node appears
in /dev/input (inotify): no polling timer, so no wake-ups on an idle node.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

from talos_init import syscalls
from talos_init.log import get_logger
from talos_init.loop import Loop, Timer

log = get_logger("powerbutton")

EV_KEY = 1
KEY_POWER = 116
# struct input_event on 64-bit Linux: timeval (two longs), u16 type, u16 code, s32 value.
INPUT_EVENT = struct.Struct("llHHi")
NOT_FOUND_AFTER = 300.0  # seconds without any KEY_POWER device before saying so
NEW_ENTRY = syscalls.IN_CREATE | syscalls.IN_MOVED_TO | syscalls.IN_ONLYDIR
INOTIFY_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name


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
        self.inotify: int | None = None
        self.parent_wd: int | None = None  # watching /dev until /dev/input exists
        self.not_found: Timer | None = None

    def start(self) -> None:
        self._watch_new_devices()
        self._scan()
        if not self.fds:
            self.not_found = self.loop.call_later(NOT_FOUND_AFTER, self._say_not_found)

    def watch_fd(self, name: str, fd: int) -> None:
        """Read input events from ``fd`` (non-blocking) in the loop."""
        self.fds[name] = fd
        self.loop.add_reader(fd, self._on_readable, name, fd)
        if self.not_found is not None:
            self.not_found.cancel()
            self.not_found = None

    # Keep watching even once one device is watched: udev's coldplug loads the ACPI button
    # driver, whose fixed-feature button can appear after another KEY_POWER device, and
    # QEMU's system_powerdown goes to that one (a 300 s hang in the e2e power-off test).
    def _watch_new_devices(self) -> None:
        try:
            self.inotify = syscalls.inotify_init()
            if not self._watch_dev_input():
                self.parent_wd = syscalls.inotify_add_watch(self.inotify, self.dev_input.parent,
                                                            NEW_ENTRY)
                self._watch_dev_input()  # created between the two calls
        except OSError as e:
            log.warning("power_button_hotplug_unwatched", error=str(e),
                        effect="a button that appears after boot is not seen")
            self.close_inotify()
            return
        self.loop.add_reader(self.inotify, self._on_new_entries)

    def _watch_dev_input(self) -> bool:
        assert self.inotify is not None
        try:
            syscalls.inotify_add_watch(self.inotify, self.dev_input, NEW_ENTRY)
        except FileNotFoundError:
            return False
        if self.parent_wd is not None:
            syscalls.inotify_rm_watch(self.inotify, self.parent_wd)
            self.parent_wd = None
        return True

    def _on_new_entries(self) -> None:
        assert self.inotify is not None
        names = []
        try:
            while data := os.read(self.inotify, 4096):
                offset = 0
                while offset + INOTIFY_EVENT.size <= len(data):
                    wd, _mask, _cookie, size = INOTIFY_EVENT.unpack_from(data, offset)
                    offset += INOTIFY_EVENT.size
                    names.append((wd, data[offset:offset + size].rstrip(b"\0").decode()))
                    offset += size
        except BlockingIOError:
            pass
        except OSError as e:
            log.warning("power_button_hotplug_read_failed", error=str(e))
            return
        if any(wd == self.parent_wd and name == self.dev_input.name for wd, name in names):
            try:
                self._watch_dev_input()
            except OSError as e:
                log.warning("power_button_hotplug_unwatched", error=str(e))
        self._scan()

    def _scan(self) -> None:
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

    def _say_not_found(self) -> None:
        self.not_found = None
        if not self.fds:
            log.warning("power_button_not_found", reason="no input device with KEY_POWER",
                        after_s=NOT_FOUND_AFTER)

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

    def close_inotify(self) -> None:
        if self.inotify is not None:
            self.loop.remove_reader(self.inotify)
            os.close(self.inotify)
            self.inotify = None
            self.parent_wd = None

    def close(self) -> None:
        for fd in self.fds.values():
            self.loop.remove_reader(fd)
            os.close(fd)
        self.fds.clear()
        self.close_inotify()
        if self.not_found is not None:
            self.not_found.cancel()
            self.not_found = None
