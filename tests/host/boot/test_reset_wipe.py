"""osctl reset's last steps: the partitions chosen by wipe mode, erased after the unmount."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from talos_init import shutdown, wipe
from talos_init.apid.bootcalls import reset_devices
from talos_init.apid.protocol import ApiError
from talos_init.boot.node import Part
from talos_init.events import EventLog
from talos_init.loop import Loop
from talos_init.reaper import Reaper


def _parts(disk: str = "/dev/vda") -> list[Part]:
    return [Part(f"{disk}{n}", disk, n, name, uuid.uuid4(), None)
            for n, name in ((1, "EFI"), (2, "STATE"), (3, "EPHEMERAL"))] + [
        Part("/dev/vdb2", "/dev/vdb", 2, "Appended2", uuid.uuid4(), None)]


def test_wipe_modes_choose_partitions_by_name_on_the_install_disk():
    """system-disk: STATE and EPHEMERAL; all: the ESP too; never another disk's partitions."""
    assert reset_devices("system-disk", _parts()) == ["/dev/vda2", "/dev/vda3"]
    assert reset_devices("all", _parts()) == ["/dev/vda1", "/dev/vda2", "/dev/vda3"]


def test_wipe_modes_refuse_what_cannot_be_done():
    """user-disks (no machine.disks acted on), an unknown mode, no install disk: refused."""
    with pytest.raises(ApiError, match="no user disks"):
        reset_devices("user-disks", _parts())
    with pytest.raises(ApiError, match="'bogus'"):
        reset_devices("bogus", _parts())
    with pytest.raises(ApiError, match="no single install disk"):
        reset_devices("all", [p for p in _parts() if p.name != "EPHEMERAL"])


def test_check_accepts_block_devices_only(tmp_path):
    """A regular file, a path outside /dev or a missing device is refused by name."""
    f = tmp_path / "x"
    f.write_bytes(b"x")
    with pytest.raises(wipe.WipeRefused, match="not a device under /dev/"):
        wipe.check([str(f)])
    with pytest.raises(wipe.WipeRefused, match="no such device"):
        wipe.check(["/dev/does-not-exist"])
    with pytest.raises(wipe.WipeRefused, match="not a block device"):
        wipe.check(["/dev/null"])
    with pytest.raises(wipe.WipeRefused, match="list of device paths"):
        wipe.check("/dev/vda1")


def test_wipe_zeroes_the_first_and_last_mib_of_an_ext4_filesystem(tmp_path):
    """A real ext4 image: after the wipe blkid finds no filesystem; the middle is untouched."""
    img = tmp_path / "part.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "EPHEMERAL", str(img)], check=True)
    with open(img, "r+b") as f:
        f.seek(4 << 20)
        f.write(b"middle")
    assert "ext4" in subprocess.run(["blkid", "-p", str(img)], capture_output=True, text=True).stdout
    assert wipe.wipe(str(img)) == 8 << 20
    data = img.read_bytes()
    assert data[:1 << 20] == bytes(1 << 20) and data[-(1 << 20):] == bytes(1 << 20)
    assert data[4 << 20:(4 << 20) + 6] == b"middle"
    assert subprocess.run(["blkid", "-p", str(img)], capture_output=True).returncode == 2


def test_shutdown_wipes_after_the_unmount_and_before_the_final_step(tmp_path):
    """The sequence: ..., unmount, wipe, reboot; the wipe ran on the device given."""
    img = tmp_path / "dev.img"
    img.write_bytes(b"\xff" * (3 << 20))
    order: list[str] = []
    loop = Loop()
    events = EventLog()
    try:
        sd = shutdown.Shutdown(loop, Reaper(loop), events, scope="descendants",
                               unmount=lambda: order.append("unmount") or [],
                               final=lambda action: (order.append(action), loop.stop()),
                               poll_interval=0.01, term_timeout=1, kill_timeout=1)
        assert sd.request("reboot", "test", wipe=[str(img)])
        loop.run_forever()
    finally:
        loop.close()
    started = [e.name for e in events.history() if e.state == "start"]
    assert order == ["unmount", "reboot"]
    assert img.read_bytes()[:1 << 20] == bytes(1 << 20)
    assert started.index("shutdown.unmount") < started.index("shutdown.wipe") < \
        started.index("shutdown.reboot"), started
