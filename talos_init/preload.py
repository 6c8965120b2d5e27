"""Load the boot's kernel modules in a child while PID 1 is still importing itself.

Before containerd can start, the kernel must link and probe the modules for the
payload mount (loop, squashfs), the storage drivers, ext4 and overlay: ~0.6 s
under TCG. PID 1's own imports take ~0.4 s more. They used to run one after the
other; now PID 1 forks this loader as soon as it runs and imports the rest of
itself meanwhile, waiting where it needs a stage: the payload mount waits for
``payload``, the early /var for ``var``.

The child loads ext4 and overlay while a thread of it loads the storage
drivers, whose probes (under TCG ~0.09 s per virtio function, the NICs' too)
run inside their own module's load, one device after the other in PCI order:
virtio indices and so NIC names stay what they were (probing in the kernel's
background, ``async_probe``, made them follow the probes' finishing order). No
stage ends while a probe runs: PID 1 starts the graph only after ``var``, and
the graph's first cgroups beside a probe stalled TCG guests. It works in
its own mount namespace with its own /sys (PID 1 has mounted nothing yet, and
the mount table stays PID 1's alone). After each stage it writes a report to a
pipe (marshal, length first): what it loaded, how long it took, the error if
any, and the log events it captured, which PID 1 writes to its own log when it
takes the stage. A stage that fails or never comes costs PID 1 the wait, not
the boot: the mount phase and the var service load what they need themselves.

What the child runs imports no re, pathlib, typing or json (a tenth of a second
each under TCG, before the fork): ``tests/unit/pid1/test_import_budget.py``.
"""

from __future__ import annotations

import _signal  # signal's C half: signal.py imports enum
import _thread  # threading's C half: threading.py imports functools, collections...
import marshal
import os
import select
import time

from talos_init import kmodules, log, syscalls
from talos_init.disk import FSTYPE, drivers

TYPE_CHECKING = False  # typing's own constant, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeAlias

    from talos_init.kmodules import PathArg

    Stage: TypeAlias = tuple[str, Callable[[], object]]

logger = log.get_logger("preload")

# The payload squashfs's mount (mounts.EARLY_MOUNTS): one loop device, not 8 (each would
# be a block device for udev's coldplug).
PAYLOAD_MODULES = ("loop max_loop=1", "squashfs")
# Loaded with ext4: containerd's start waits for /sys/module/overlay (its snapshotter),
# not for the kernel-modules one-shot, which loads it too.
RUNTIME_MODULES = ("overlay",)


def boot_stages(payload_modules: tuple[str, ...] = PAYLOAD_MODULES,
                sys_bus: PathArg = "/sys/bus") -> list[Stage]:
    """What PID 1 needs before containerd, in the order it needs it."""
    stages: list[Stage] = []
    if payload_modules:
        stages.append(("payload", lambda: kmodules.load(payload_modules)))
    stages.append(("var", lambda: _var_stage(sys_bus)))
    return stages


def _var_stage(sys_bus: PathArg) -> dict[str, Any]:
    """The storage drivers in a thread, probing, while this one loads ext4 and overlay."""
    storage = _Thread(lambda: drivers.load_storage_drivers(sys_bus))
    try:
        modules = kmodules.load((FSTYPE, *RUNTIME_MODULES))
    finally:
        asked = storage.join()  # the stage never ends with a probe still running
    return {"storage": asked, "modules": modules}


class _Thread:
    """``work`` in a thread of its own; ``join`` returns what it returned or raises what it
    raised. (threading's imports cost the loader's start.)"""

    def __init__(self, work: Callable[[], Any]):
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._result: Any = None
        self._error: BaseException | None = None
        _thread.start_new_thread(self._run, (work,))

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self._result = work()
        except BaseException as exc:  # noqa: BLE001 - join raises it in the stage's thread
            self._error = exc
        finally:
            self._done.release()

    def join(self) -> Any:
        with self._done:
            if self._error is not None:
                raise self._error
            return self._result


class Loader:
    """The forked loader, seen from PID 1: ``wait`` for a stage; ``reports`` by stage name."""

    def __init__(self, pid: int, rfd: int):
        self.pid, self.rfd = pid, rfd
        self.reports: dict[str, dict[str, Any]] = {}
        self.ended = False  # the pipe is closed: the child exited (or died)
        self._buffer = b""
        self._logged: set[str] = set()

    def wait(self, stage: str, timeout: float) -> dict[str, Any] | None:
        """The stage's report once the child sent it, None if it ended or ``timeout`` passed
        first. Writes the child's log events of every stage received so far, once. Never
        raises: PID 1 calls it from its boot phases."""
        deadline = time.monotonic() + timeout
        while stage not in self.reports and not self.ended:
            left = deadline - time.monotonic()
            try:
                if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                    break
                self._read()
            except (OSError, ValueError, EOFError, TypeError, KeyError) as exc:
                logger.warning("preload_unreadable", error=f"{type(exc).__name__}: {exc}",
                               effect="the phases load their modules themselves")
                self._end()
        for name, report in self.reports.items():
            if name not in self._logged:
                self._logged.add(name)
                for event in report.pop("events", ()):
                    log.replay(event)
                extra = {"error": report["error"]} if report["error"] else {}
                logger.info("modules_preloaded", stage=name, seconds=report["seconds"],
                            done=report["result"], **extra)
        if self.ended:
            self._reap()
        return self.reports.get(stage)

    def _read(self) -> None:
        chunk = os.read(self.rfd, 65536)
        if not chunk:
            self._end()
            return
        self._buffer += chunk
        while len(self._buffer) >= 4:
            size = int.from_bytes(self._buffer[:4], "little")
            if len(self._buffer) < 4 + size:
                break
            report = marshal.loads(self._buffer[4:4 + size])
            self._buffer = self._buffer[4 + size:]
            self.reports[report["stage"]] = report

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            os.close(self.rfd)

    def _reap(self) -> None:
        if self.pid:
            try:
                os.waitpid(self.pid, 0)  # it closed the pipe on its way out
            except ChildProcessError:  # PID 1's reaper got there first
                pass
            self.pid = 0


def start(stages: list[Stage]) -> Loader:
    """Fork the loader; it runs the stages in order and exits."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child(stages, wfd)  # never returns
    os.close(wfd)
    return Loader(pid, rfd)


def _child(stages: list[Stage], wfd: int) -> None:
    code = 0
    try:
        _reset_signals()
        _own_sysfs()
        for name, work in stages:
            started = time.monotonic()
            result, error = None, None
            with log.capture() as events:
                try:
                    result = work()
                except Exception as exc:  # noqa: BLE001 - reported; PID 1 falls back
                    error, code = f"{type(exc).__name__}: {exc}", 1
            report = marshal.dumps(_plain({
                "stage": name, "seconds": round(time.monotonic() - started, 3),
                "result": result, "error": error, "events": events}))
            os.write(wfd, len(report).to_bytes(4, "little") + report)
    except BaseException:  # noqa: BLE001 - nothing may unwind into PID 1's code here
        code = 2
    os._exit(code)


def _reset_signals() -> None:
    """PID 1's handlers and wake-up fd are not the child's (a loader started by the var phase
    comes after the signals phase): a SIGTERM must end it, not run PID 1's shutdown in it."""
    _signal.set_wakeup_fd(-1)
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGUSR1,
                _signal.SIGUSR2, _signal.SIGCHLD):
        _signal.signal(sig, _signal.SIG_DFL)


def _plain(value: object) -> None | bool | int | float | str | dict[str, object] | list[object]:
    """What marshal can carry: anything else (a path, an exception) as its str."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _own_sysfs() -> None:
    """/sys for the drivers' modaliases and /sys/module, in a mount namespace of its own."""
    if os.path.isdir("/sys/bus"):  # already there (PID 1 mounted it: a late start)
        return
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    syscalls.mount("sysfs", "/sys", "sysfs", syscalls.MS_NOSUID | syscalls.MS_NODEV
                   | syscalls.MS_NOEXEC)
