"""The devices one-shot, run for real against this host's udev (pyudev, netlink monitor)."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.host


def test_timeout_exits_1_and_names_each_missing_device():
    """A need nothing satisfies makes it exit 1 after the timeout, naming the device in words."""
    proc = subprocess.run([sys.executable, "-I", "-m", "talos_init.devices", "--need", "net:nosuch0",
                           "--need", "disk:nosuchdisk", "--timeout", "1"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert ("devices: after 1s still missing: network interface nosuch0; disk nosuchdisk"
            in proc.stderr)


def test_bad_need_is_a_usage_error():
    """An unknown kind is refused before waiting, with the text given."""
    proc = subprocess.run([sys.executable, "-I", "-m", "talos_init.devices", "--need", "usb"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "need 'usb'" in proc.stderr
