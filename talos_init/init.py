"""PID 1: the boot checklist, then the event loop, forever.

``main()`` is what the kernel runs. Each boot phase is one module, called in
order from ``Init.boot``. PID 1 never exits: an exception in a phase is
logged with its traceback, the remaining phases are skipped, and PID 1 keeps
reaping and serving while it counts down to a reboot (or waits, with
``talos.halt_if_failed`` or ``panic=0``).

Host mode (``--root DIR --subreaper``, or ``InitConfig.for_host``) runs the
same program as an ordinary child process for tests: it becomes a child
subreaper, mounts nothing, signals only its own descendants, never calls
reboot(2) or touches Ctrl-Alt-Del, and its final action ends the loop with
the action recorded as its result.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # before the heavier imports: when Python got control

import os  # noqa: E402 (after the start time on purpose)
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Protocol  # noqa: E402

from talos_init import cmdline as cmdline_mod  # noqa: E402
from talos_init import log as logging_setup  # noqa: E402
from talos_init import mounts, signals, syscalls  # noqa: E402
from talos_init.control import pid1 as control_pid1  # noqa: E402
from talos_init.control.server import ControlServer  # noqa: E402
from talos_init.events import Event, EventLog  # noqa: E402
from talos_init.log import get_logger  # noqa: E402
from talos_init.loop import Loop  # noqa: E402
from talos_init.paths import Paths  # noqa: E402
from talos_init.powerbutton import PowerButton  # noqa: E402
from talos_init.reaper import Reaper  # noqa: E402
from talos_init.record import record  # noqa: E402
from talos_init.shutdown import Shutdown, reboot_final  # noqa: E402

if TYPE_CHECKING:
    from talos_init.preload import Loader

log = get_logger("init")

# Seconds PID 1 waits for a stage of the kernel module loader (talos_init.preload) before it
# goes on without it; the storage drivers' wait is disk/early.py's DEADLINE.
PRELOAD_PAYLOAD_WAIT = 5.0


class Supervisor(Protocol):
    """What PID 1 needs from the service graph (``talos_init.service``)."""

    def start(self) -> None:
        """Start the graph; returns at once, the work happens in loop callbacks."""

    def stop_all(self, deadline: float, on_done: Callable[[], None]) -> None:
        """Stop every service in reverse dependency order; call ``on_done()``
        from the loop when all are down. ``deadline`` is on ``loop.clock``;
        shutdown goes on after it whether ``on_done`` was called or not."""


@record
class InitContext:
    """Everything a supervisor is built from."""

    loop: Loop
    reaper: Reaper
    events: EventLog
    paths: Paths
    cmdline: cmdline_mod.KernelCmdline
    request_shutdown: Callable[[str, str], bool]  # (action, reason): reboot | poweroff | halt


SupervisorFactory = Callable[[InitContext], Supervisor]


@record
class InitConfig:
    root: Path = Path("/")
    host_mode: bool = False
    proc: Path | None = None  # live /proc for the process table; default root/proc
    cmdline: Path | None = None  # default root/proc/cmdline
    console: str | None = "/dev/console"  # None: stderr
    kmsg: str | None = "/dev/kmsg"
    json_log: bool = False
    failure_countdown: float = 10.0
    stop_timeout: float = 30.0
    term_timeout: float = 10.0
    kill_timeout: float = 5.0
    supervisor_factory: SupervisorFactory | None = None  # default: talos_init.service.supervisor
    # False only where "/" is the host's (PID 1 tests in a pid namespace): a
    # read-only remount changes the superblock, which the host shares.
    unmount: bool = True
    power_button: bool = True  # off in host mode: the host's button is not ours
    # False where /proc/sys is the host's (PID 1 tests in a pid namespace): most
    # sysctls are global, and a test must not harden the machine it runs on.
    harden: bool = True
    # False where the disks and kernel modules are the host's (PID 1 tests in a pid
    # namespace): the early /var phase would load drivers into it and mount its disks.
    early_var: bool = True
    mount_table: tuple[mounts.MountSpec, ...] = mounts.EARLY_MOUNTS
    # The kernel module loader forked before PID 1's imports (talos_init.__main__); None:
    # each phase loads its modules itself.
    preload: Loader | None = None

    @classmethod
    def for_host(cls, root: Path, **kw: object) -> InitConfig:
        kw.setdefault("proc", Path("/proc"))
        kw.setdefault("console", None)
        kw.setdefault("kmsg", None)
        kw.setdefault("power_button", False)
        return cls(root=Path(root), host_mode=True, **kw)  # type: ignore[arg-type]


def default_supervisor_factory() -> SupervisorFactory | None:
    """``talos_init.service.supervisor.create`` once the service graph exists."""
    try:
        from talos_init.service import supervisor
    except ModuleNotFoundError as e:
        if e.name in ("talos_init.service", "talos_init.service.supervisor"):
            return None
        raise
    return supervisor.create


class Init:
    def __init__(self, config: InitConfig):
        self.config = config
        self.paths = Paths(config.root)
        self.proc = config.proc or self.paths.at("/proc")
        self.phase = "start"
        self.events = EventLog()
        self.events.subscribe(self._on_event)
        self.loop = Loop()
        self.reaper = Reaper(self.loop)
        self.cmdline = cmdline_mod.KernelCmdline()
        self.supervisor: Supervisor | None = None
        self.result: str | None = None  # host mode: the action the shutdown ended with
        self.failed_phase = ""
        self.power_button: PowerButton | None = None
        self.control: ControlServer | None = None
        self.shutdown = Shutdown(
            self.loop, self.reaper, self.events,
            final=self._host_final if config.host_mode else reboot_final,
            scope="descendants" if config.host_mode else "all",
            unmount=self._unmount if config.unmount and not config.host_mode else None,
            proc=self.proc, stop_timeout=config.stop_timeout,
            term_timeout=config.term_timeout, kill_timeout=config.kill_timeout)
        self._configure_logging(kmsg=None)

    # -- the checklist --------------------------------------------------------------

    def boot(self) -> bool:
        """Run the boot phases in order; False at the first that fails (the rest are skipped)."""
        checklist = (
            ("signals", self.setup_signals),  # busybox signals; CAD off; subreaper in host mode
            ("mounts", self.mount),  # mounts.EARLY_MOUNTS: /proc, /sys, /dev, ..., the payload
            ("cmdline", self.read_cmdline),  # talos.config=, ip=, halt_if_failed, panic=
            ("logging", self.setup_logging),  # console and /dev/kmsg
            ("power_button", self.watch_power_button),  # ACPI button press: power off
            ("hardening", self.harden),  # KSPP sysctls before any service starts
            ("control", self.start_control),  # /run/talos/init.sock for apid, before the graph
            # Before var: the kernel module loader may still be at work, and this needs none.
            ("graph", self.load_services),  # the service definitions, checked; nothing runs yet
            ("var", self.mount_installed_var),  # an installed, clean /var: containerd at once
            ("services", self.start_services),  # the supervisor runs the service graph
        )
        return all(self.run_phase(name, phase) for name, phase in checklist)

    def run(self) -> str | None:
        """Boot, then serve forever (host mode: until the shutdown's final step)."""
        self.events.phase("init", "start", pid=os.getpid(), host_mode=self.config.host_mode,
                          python_started=round(STARTED, 6))
        if not self.boot():
            self.boot_failed()
        while True:
            try:
                self.loop.run_forever()
            except BaseException:  # PID 1 survives even KeyboardInterrupt
                log.exception("loop_failed")
            if self.config.host_mode and self.result is not None:
                return self.result

    def run_phase(self, name: str, phase: Callable[[], object]) -> bool:
        start = time.monotonic()
        self.events.phase(name, "start")
        try:
            phase()
        except Exception as e:
            # Policy: log with traceback, skip the rest of the boot, stay up.
            log.exception("phase_failed", phase=name)
            self.events.phase(name, "failed", f"{type(e).__name__}: {e}",
                              duration=round(time.monotonic() - start, 6))
            self.failed_phase = name
            return False
        self.events.phase(name, "done", duration=round(time.monotonic() - start, 6))
        return True

    # -- phases ------------------------------------------------------------------------

    def setup_signals(self) -> None:
        if self.config.host_mode:
            syscalls.set_child_subreaper()
        else:
            try:
                syscalls.set_ctrl_alt_del(False)  # Ctrl-Alt-Del now arrives as SIGINT
            except OSError as e:
                # Policy: warn; the kernel then reboots at once on Ctrl-Alt-Del.
                # (EINVAL inside a pid namespace, where the host owns CAD.)
                log.warning("ctrl_alt_del_not_disabled", error=str(e))
        signals.install(self.loop, self.request_shutdown)

    def harden(self) -> None:
        if self.config.host_mode or not self.config.harden:
            log.info("hardening_skipped", reason="the sysctls are the host's")
            return
        from talos_init import hardening  # only here: host mode never needs it

        hardening.apply_kernel_hardening(self.paths.at("/proc/sys"),
                                         self.config.cmdline or self.paths.cmdline)

    def mount_installed_var(self) -> None:
        """Every boot after the first: mount the installed /var from PID 1 (disk/early.py),
        so containerd starts with the graph, not after the var service's own interpreter
        start. Never fails: what is not plain is the var service's."""
        from talos_init.disk import early, var  # only here: host mode never mounts a disk

        attempt = early.EarlyVar(var.Layout(), self.paths.var_early, loader=self.config.preload)
        if self.config.host_mode or not self.config.early_var:
            attempt.skip("host mode" if self.config.host_mode else "the disks are the host's")
            return
        attempt.start()

    def mount(self) -> None:
        if self.config.host_mode:
            log.info("mounts_skipped", reason="host mode")
        else:
            if self.config.preload is not None:  # loop and squashfs: its first stage
                self.config.preload.wait("payload", PRELOAD_PAYLOAD_WAIT)
            results = mounts.mount_all(self.config.root, self.config.mount_table)
            failed = [r for r in results if r.spec.required and not r.ok]
            if failed:
                raise RuntimeError("required mounts failed: " + "; ".join(
                    f"{r.spec.target}: {r.error}" for r in failed))
        self._record_handoff()

    def read_cmdline(self) -> None:
        path = self.config.cmdline or self.paths.cmdline
        self.cmdline = cmdline_mod.read(path)
        for error in self.cmdline.errors:
            log.warning("cmdline_error", param=error.param, value=error.value, reason=error.reason)
        log.info("cmdline", config_url=self.cmdline.config_url, hostname=self.cmdline.hostname,
                 halt_if_failed=self.cmdline.halt_if_failed, panic=self.cmdline.panic)

    def setup_logging(self) -> None:
        kmsg = self.paths.at(self.config.kmsg) if self.config.kmsg else None
        if kmsg is not None and not self.config.host_mode:
            # Unlimited /dev/kmsg writes: the default ratelimit keeps 10 lines per 5 s.
            try:
                self.paths.at("/proc/sys/kernel/printk_devkmsg").write_text("on\n")
            except OSError as e:
                log.warning("printk_devkmsg_unset", error=str(e))
        self._configure_logging(kmsg=str(kmsg) if kmsg else None)

    def watch_power_button(self) -> None:
        if not self.config.power_button:
            log.info("power_button_skipped", reason="host mode")
            return
        self.power_button = PowerButton(
            self.loop, lambda: self.request_shutdown("poweroff", "power button"),
            self.paths.at("/sys/class/input"), self.paths.at("/dev/input"))
        self.power_button.start()

    def start_control(self) -> None:
        # Up before the graph: a node whose graph is refused still answers and reboots.
        self.control = control_pid1.start(self.loop, self.paths.control_socket, self.events,
                                          self.request_shutdown)

    def load_services(self) -> None:
        factory = self.config.supervisor_factory or default_supervisor_factory()
        if factory is None:
            log.warning("no_service_supervisor", reason="talos_init.service.supervisor not present")
            return
        self.supervisor = factory(InitContext(self.loop, self.reaper, self.events, self.paths,
                                              self.cmdline, self.request_shutdown))
        self.shutdown.stop_services = self.supervisor.stop_all
        # A stand-in supervisor (--supervisor, tests) may lack what the methods read: skip them.
        if self.control is not None and hasattr(self.supervisor, "defs"):
            from talos_init.service import control as service_control

            service_control.register(self.control, self.supervisor)  # type: ignore[arg-type]

    def start_services(self) -> None:
        if self.supervisor is not None:
            self.supervisor.start()

    # -- failure and shutdown -------------------------------------------------------

    def boot_failed(self) -> None:
        phase = self.failed_phase
        if self.cmdline.wait_on_failure:
            log.critical("boot_failed_waiting", phase=phase,
                         reason="talos.halt_if_failed or panic=0: not rebooting")
            self.events.phase("failure", "waiting", f"boot phase {phase} failed")
            return
        self.events.phase("failure", "countdown", f"boot phase {phase} failed",
                          seconds=self.config.failure_countdown)
        self._countdown(self.config.failure_countdown, phase)

    def _countdown(self, left: float, phase: str) -> None:
        if self.shutdown.in_progress:
            return
        if left <= 0:
            self.request_shutdown("reboot", f"boot phase {phase} failed")
            return
        log.critical("boot_failed_rebooting", phase=phase, seconds_left=round(left, 1))
        step = min(1.0, left)
        self.loop.call_later(step, self._countdown, left - step, phase)

    def request_shutdown(self, action: str, reason: str, wipe: list[str] | tuple[str, ...] = ()) -> bool:
        return self.shutdown.request(action, reason, wipe)

    def _host_final(self, action: str) -> None:
        self.result = action
        log.info("init_exit", result=action, reason="host mode: no reboot(2)")
        self.loop.stop()

    def _unmount(self) -> list[mounts.UnmountResult]:
        return mounts.unmount_all(self.config.root, self.proc / "self/mountinfo")

    # -- helpers ------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.kind != "phase":
            return
        if event.state == "start":
            self.phase = event.name
        log.info("phase", name=event.name, state=event.state,
                 **({"reason": event.reason} if event.reason else {}), **event.fields)

    def _configure_logging(self, kmsg: str | None) -> None:
        console = self.config.console
        logging_setup.configure(
            console=str(self.paths.at(console)) if console else None, kmsg=kmsg,
            json=self.config.json_log, phase_getter=lambda: self.phase)

    def _record_handoff(self) -> None:
        # exec_at (the kernel's exec of /init) is filled in by apid from the kernel's
        # "Run /init" record: /proc/1/stat's starttime is the init thread's creation.
        self.events.record("boot", "kernel_handoff", "done", exec_at=None,
                           python_started=round(STARTED, 6))


def parse_args(argv: list[str]) -> InitConfig:
    import argparse  # host mode only: real PID 1 gets the kernel's leftovers as argv

    parser = argparse.ArgumentParser(prog="talos_init", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="node root (a temp dir in tests)")
    parser.add_argument("--subreaper", action="store_true", required=True,
                        help="host mode: child subreaper, no mounts, no reboot(2)")
    parser.add_argument("--cmdline", type=Path, help="kernel command line file")
    parser.add_argument("--proc", type=Path, default=Path("/proc"))
    parser.add_argument("--json", action="store_true", help="JSON-lines log")
    parser.add_argument("--failure-countdown", type=float, default=10.0)
    parser.add_argument("--stop-timeout", type=float, default=30.0)
    parser.add_argument("--term-timeout", type=float, default=10.0)
    parser.add_argument("--kill-timeout", type=float, default=5.0)
    parser.add_argument("--supervisor", metavar="MODULE:FACTORY",
                        help="supervisor factory to use instead of talos_init.service.supervisor")
    args = parser.parse_args(argv)
    factory = None
    if args.supervisor:
        import importlib

        module, _, attr = args.supervisor.partition(":")
        factory = getattr(importlib.import_module(module), attr or "create")
    return InitConfig.for_host(
        args.root, cmdline=args.cmdline, proc=args.proc, json_log=args.json,
        failure_countdown=args.failure_countdown, stop_timeout=args.stop_timeout,
        term_timeout=args.term_timeout, kill_timeout=args.kill_timeout,
        supervisor_factory=factory)


def main(argv: list[str] | None = None,  # type: ignore[return]  # PID 1 never returns
         preload: Loader | None = None) -> int:
    if os.getpid() != 1:
        return 0 if Init(parse_args(sys.argv[1:] if argv is None else argv)).run() else 1
    try:
        Init(InitConfig(preload=preload)).run()  # the kernel's leftover argv is not ours
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
    _last_resort()


def _last_resort() -> None:
    # Only reached if Init itself could not be built: exiting would panic the
    # kernel, so reap forever and leave the console readable.
    print("talos-init: PID 1 failed to start; reaping only", file=sys.stderr, flush=True)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(60)
        except BaseException:  # noqa: BLE001
            pass
