"""One QEMU virtual machine booting the talos-init image: start, watch the console, stop.

The serial console is read by a thread into a log file and an in-memory
buffer; ``wait_for`` blocks on a condition until a line matches (no sleeps).
The monitor is QMP on a unix socket, used for ``system_powerdown``. The VM is
always killed by ``close()``, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

RELAY = Path(__file__).with_name("relay.py")
GUEST_CONFIG_HOST = "10.0.2.100"  # the userdata server, as the guest sees it
# Console lines after which waiting for anything else is pointless.
FATAL = (r"Kernel panic - not syncing", r"no_service_supervisor", r"service_definition_invalid",
         r"boot_failed_waiting", r"boot_failed_rebooting")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # QEMU runs in its own session (a test's Ctrl-C must not reach it first), so make sure it
    # cannot outlive pytest if pytest itself is killed.
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class VMError(AssertionError):
    """A VM did not do what a test waited for (the message says what, the log says why)."""


@dataclass
class VMSpec:
    kernel: Path
    initrd: Path
    workdir: Path
    cmdline: list[str] = field(default_factory=list)
    memory_mb: int = 1024
    cpus: int = 2
    config_port: int | None = None  # host 127.0.0.1 port serving the userdata (guest 10.0.2.100:80)
    api_port: int | None = None  # host 127.0.0.1 port forwarded to the guest's :50000
    disk_mb: int = 1024  # a blank sparse virtio data disk (the install layout needs 677+ MiB); 0 for none
    disk: Path | None = None  # reuse this raw disk image (e.g. a previous boot's) instead of a blank one
    # More virtio NICs, one MAC each, after the user-mode one (eth1, eth2...). Each sits alone on
    # its own QEMU hub: carrier but no peer, so no traffic goes anywhere (static, VLAN, bond).
    extra_nics: tuple[str, ...] = ()
    accel: str = field(default_factory=lambda: os.environ.get("TALOS_QEMU_ACCEL", "tcg"))
    # TCG's default CPU model lacks RDRAND, which every x86 server since 2012 has: without it
    # the guest's RNG is not ready until jitter entropy is gathered, and PID 1's interpreter
    # waits ~1 s for it at start (Python seeds its hashes from /dev/urandom). See performance.md.
    tcg_cpu: str = "qemu64,+rdrand"
    echo: bool = False  # also copy the console to our stdout (make run)
    # QEMU's -mem-prealloc: all guest RAM faulted in on the host before the guest starts, so
    # the guest's first touch of a page costs it no host page fault (the benchmark: on this
    # nested host those faults moved boot figures by 0.2-0.35 s; performance.md, run 13).
    prealloc: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VM:
    def __init__(self, spec: VMSpec):
        self.spec = spec
        spec.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = spec.workdir / "serial.log"
        self.qmp_path = spec.workdir / "qmp.sock"
        self._text = ""
        self._cond = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self.started_at = 0.0

    @property
    def disk_path(self) -> Path:
        """The raw data disk this VM uses: pass it as ``disk=`` to boot again with the same one."""
        return self.spec.disk if self.spec.disk is not None else self.spec.workdir / "data.raw"

    # ---- lifecycle -------------------------------------------------------------------

    def argv(self) -> list[str]:
        s = self.spec
        netdev = "user,id=n0,restrict=on"
        if s.config_port is not None:
            relay = f"{sys.executable} {RELAY} 127.0.0.1 {s.config_port}"
            netdev += f",guestfwd=tcp:{GUEST_CONFIG_HOST}:80-cmd:{relay}"
        if s.api_port is not None:
            netdev += f",hostfwd=tcp:127.0.0.1:{s.api_port}-:50000"
        argv = [
            "qemu-system-x86_64", "-machine", f"pc,accel={s.accel}", "-m", str(s.memory_mb),
            "-smp", str(s.cpus), "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", str(s.kernel), "-initrd", str(s.initrd),
            # loglevel=6: kernel warnings on the console, not the info records PID 1 also writes to kmsg.
            "-append", " ".join(["console=ttyS0", "panic=-1", "loglevel=6", *s.cmdline]),
            "-serial", "stdio", "-monitor", "none",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0",
            *[arg for i, mac in enumerate(s.extra_nics, 1)
              for arg in ("-netdev", f"hubport,id=h{i},hubid={i}",
                          "-device", f"virtio-net-pci,netdev=h{i},mac={mac}")],
            # A panic or a reboot request ends the VM: tests see QEMU exit instead of a loop.
            "-no-reboot",
        ]
        argv += ["-cpu", "host" if s.accel == "kvm" else s.tcg_cpu]
        if s.prealloc:
            argv.append("-mem-prealloc")
        if s.disk is not None:
            if not s.disk.is_file():
                raise VMError(f"disk {s.disk}: no such file")
            argv += ["-drive", f"file={s.disk},if=virtio,format=raw,cache=unsafe"]
        elif s.disk_mb:
            disk = self.disk_path
            with open(disk, "wb") as f:
                f.truncate(s.disk_mb * 2**20)
            argv += ["-drive", f"file={disk},if=virtio,format=raw,cache=unsafe"]
        return argv

    def start(self) -> VM:
        self.qmp_path.unlink(missing_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8", errors="replace")
        self.started_at = time.monotonic()
        self._proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=_die_with_parent)
        self._reader = threading.Thread(target=self._read, name="vm-serial", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in iter(lambda: self._proc.stdout.readline(), b""):
            line = raw.decode("utf-8", errors="replace").replace("\r", "")
            self._log.write(line)
            self._log.flush()
            if self.spec.echo:
                sys.stdout.write(line)
                sys.stdout.flush()
            with self._cond:
                self._text += line
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Kill QEMU if it is still running; always safe to call."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._proc is not None:
            self._proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> VM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- observing -------------------------------------------------------------------

    @property
    def console(self) -> str:
        with self._cond:
            return self._text

    @property
    def exited(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def wait_for(self, pattern: str, timeout: float, since: int = 0,
                 fatal: tuple[str, ...] = FATAL) -> re.Match:
        """Wait until a console line matches ``pattern`` (regex, multiline), or fail naming it.

        Fails at once when a ``fatal`` line shows up (a panic, a PID 1 without services).
        """
        rx = re.compile(pattern, re.MULTILINE)
        stop = re.compile("|".join(fatal), re.MULTILINE) if fatal else None
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self._text, since)
                if m:
                    return m
                bad = stop.search(self._text, since) if stop else None
                if bad:
                    line_end = self._text.find("\n", bad.start())
                    raise VMError(f"waiting for {pattern!r}: the console says "
                                  f"{self._text[bad.start():line_end if line_end > 0 else None]!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise VMError(f"no console line matching {pattern!r} within {timeout:.0f}s")
                if self.exited and not (self._reader and self._reader.is_alive()):
                    raise VMError(f"QEMU exited ({self._proc.returncode}) before a console line "
                                  f"matched {pattern!r}")
                self._cond.wait(min(left, 1.0))

    def wait_exit(self, timeout: float) -> int:
        """Wait for QEMU to exit on its own (power-off inside the guest)."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VMError(f"QEMU still running {timeout:.0f}s after it was asked to power off") from None
        if self._reader is not None:
            self._reader.join(timeout=10)  # the console's last lines may still be in the pipe
        return code

    # ---- the monitor -----------------------------------------------------------------

    def qmp(self, command: str, **arguments) -> dict:
        """Run one QMP command on a fresh connection and return its reply."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(self.qmp_path))
            f = s.makefile("rwb")
            json.loads(f.readline())  # greeting
            for cmd in ({"execute": "qmp_capabilities"},
                        {"execute": command, **({"arguments": arguments} if arguments else {})}):
                f.write(json.dumps(cmd).encode() + b"\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "event" not in reply:
                        break
                if "error" in reply:
                    raise VMError(f"QMP {cmd['execute']}: {reply['error']}")
            return reply

    def powerdown(self) -> None:
        """Press the ACPI power button."""
        self.qmp("system_powerdown")
