"""The supervisor: the I/O shell around the pure ``Core``.

Interface for PID 1 (init.py) and the control socket::

    sup = create(ctx)                 # init.py's factory: loads paths.services, checks the
                                      # graph (raises InvalidDefinitions, every error logged)
    # or, explicitly:
    sup = Supervisor(loop, reaper, events, definitions, paths,
                     cgroup_root=Path("/sys/fs/cgroup"),  # None: no cgroups; tests mount their own
                     log_dir=None,                        # or set_log_dir() once /var is up
                     log_dir_after=None)                  # ("var", Path("/var/log")): automatic
    sup.start()                       # opens NOTIFY_SOCKET, starts the graph; returns at once
    sup.stop_all(deadline, on_done)   # shutdown: reverse dependency order, each with its stop
                                      # signal then SIGKILL after its own stop timeout;
                                      # on_done() runs once, when all have ended, or at
                                      # ``deadline`` (absolute, on loop.clock) after SIGKILL
                                      # to whatever is left. Both arguments are optional.
    sup.services() -> list[dict]      # id, state, want, reason, health (+ _message, _since
                                      # on the events' clock, _for seconds), pid, uptime,
                                      # restarts, last_exit, status, events (last 10)
    sup.start_service(id); sup.stop_service(id); sup.restart_service(id)
    sup.logs(id, tail=None) -> list[str]
    sup.follow_logs(id, callback) -> unsubscribe   # callback(line) for each new line
    sup.history(id) -> list[dict]     # the last 64 transitions
    sup.set_log_dir(Path("/var/log")) # also write /var/log/<id>.log from now on
    sup.close()                       # tests: release the socket, timers and fds

``definitions`` come from ``loader.load_directory(paths.services)``, which
raises ``InvalidDefinitions`` (every file, field, unknown edge and cycle)
before anything starts; the constructor checks the graph again. Unknown ids
raise ``UnknownService``. Everything runs on the Loop; nothing here blocks
except the short fork/exec hand-shake in ``spawn``.
"""

from __future__ import annotations

import os
import random
import signal
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from talos_init.events import EventLog
from talos_init.log import get_logger
from talos_init.loop import Loop, Timer
from talos_init.paths import Paths
from talos_init.reaper import ExitStatus, Reaper
from talos_init.service import core as c
from talos_init.service.cgroups import Cgroups
from talos_init.service.conditions import Conditions
from talos_init.service.configvalues import ConfigValueError, resolve
from talos_init.service.definition import Definition
from talos_init.service.logring import LogRing
from talos_init.service.notify import NotifyListener
from talos_init.service.probes import Prober
from talos_init.service.spawn import SpawnError, SpawnRequest, spawn
from talos_init.service.state import ACTIVE

log = get_logger("service")

BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class UnknownService(LookupError):
    def __init__(self, sid: str):
        super().__init__(f"no service {sid!r}")


class Supervisor:
    def __init__(self, loop: Loop, reaper: Reaper, events: EventLog,
                 definitions: Iterable[Definition], paths: Paths, *,
                 cgroup_root: Path | None = Path("/sys/fs/cgroup"),
                 log_dir: Path | None = None, conditions: Conditions | None = None,
                 base_env: dict[str, str] | None = None, rng: random.Random | None = None,
                 proc: Path = Path("/proc"), log_dir_after: tuple[str, Path] | None = None):
        self.loop, self.reaper, self.events, self.paths = loop, reaper, events, paths
        self.proc = proc  # the kernel's view of processes; the real /proc even in tests
        self.conditions = conditions or Conditions(paths)
        self.core = c.Core(definitions, self.conditions.check_conditions,
                           self.conditions.check_skip, rng, self.conditions.check_done)
        self.defs = self.core.defs
        self.cgroups = Cgroups(cgroup_root) if cgroup_root is not None else None
        self.base_env = dict(BASE_ENV if base_env is None else base_env)
        self.rings = {sid: LogRing(d.log_ring_bytes, d.log_max_line)
                      for sid, d in self.defs.items()}
        self._cgroup: dict[str, Path | None] = {}
        self._outputs: dict[str, int] = {}
        self._timers: dict[tuple[str, str], Timer] = {}
        self._probers: dict[str, Prober] = {}
        self._on_stopped: list[Callable[[], None]] = []
        self._queue: deque[c.Action] = deque()
        self._applying = False
        self._stop_deadline: Timer | None = None
        self.notify: NotifyListener | None = None
        # (service id, directory): open log files once that one-shot finished (e.g. /var).
        self.log_dir_after = log_dir_after
        if log_dir is not None:
            self.set_log_dir(log_dir)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        try:
            self.notify = NotifyListener(self.loop, self.paths.notify_socket,
                                         self._attribute, self._on_notify)
        except OSError as exc:  # policy: log; notify services then never become ready
            log.error("notify_socket_failed", path=str(self.paths.notify_socket), error=str(exc))
        self._apply(self.core.start(self.loop.clock()))

    def stop_all(self, deadline: float | None = None,
                 on_done: Callable[[], None] | None = None) -> None:
        """Stop every service, dependents first; ``on_done()`` once, when all have ended.

        ``deadline`` (on ``loop.clock``) bounds the whole stop: then everything
        left gets SIGKILL and ``on_done`` runs anyway, so nothing hangs a reboot.
        """
        if on_done is not None:
            self._on_stopped.append(on_done)
        if deadline is not None and self._stop_deadline is None:
            self._stop_deadline = self.loop.call_at(deadline, self._stop_deadline_passed)
        self._apply(self.core.stop_all(self.loop.clock()))
        if self.core.all_stopped:
            self._all_stopped()

    def _stop_deadline_passed(self) -> None:
        left = [sid for sid, st in self.core.status.items() if st.state in ACTIVE]
        log.warning("stop_deadline_passed", killing=left)
        for sid in left:
            self._signal(sid, signal.SIGKILL)
        self._all_stopped()

    def _all_stopped(self) -> None:
        if self._stop_deadline is not None:
            self._stop_deadline.cancel()
        self._close_notify()
        # Files open for writing keep /var busy: shutdown could not unmount it or remount it ro.
        for ring in self.rings.values():
            ring.close_file()
        callbacks, self._on_stopped = self._on_stopped, []
        for cb in callbacks:
            cb()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for prober in self._probers.values():
            prober.stop()
        self._probers.clear()
        for fd in self._outputs.values():
            self.loop.remove_reader(fd)
            os.close(fd)
        self._outputs.clear()
        for ring in self.rings.values():
            ring.close_file()
        self._close_notify()

    def _close_notify(self) -> None:
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    # -- API ------------------------------------------------------------------------

    def _known(self, sid: str) -> str:
        if sid not in self.defs:
            raise UnknownService(sid)
        return sid

    def start_service(self, sid: str) -> None:
        self._apply(self.core.request_start(self._known(sid), self.loop.clock()))

    def stop_service(self, sid: str) -> None:
        self._apply(self.core.request_stop(self._known(sid), self.loop.clock()))

    def restart_service(self, sid: str) -> None:
        self._apply(self.core.request_restart(self._known(sid), self.loop.clock()))

    def recheck(self) -> None:
        """Re-evaluate conditions now (e.g. after the network came up)."""
        self._apply(self.core.recheck(self.loop.clock()))

    def services(self) -> list[dict[str, Any]]:
        now = self.loop.clock()
        out = []
        for sid in self.core.order:
            st, d = self.core.status[sid], self.defs[sid]
            health = self.core.health(sid)
            out.append({
                "id": sid, "description": d.description, "state": st.state.value,
                "want": st.want.value, "reason": st.reason, "health": health.state,
                "health_message": health.message,
                "health_since": round(health.since, 6) if health.since is not None else None,
                "health_for": round(now - health.since, 3) if health.since is not None else None,
                "pid": st.pid,
                "uptime": round(now - st.started_at, 3)
                if st.started_at is not None and st.state in ACTIVE else None,
                "restarts": st.restarts, "crashes_in_row": st.crashes_in_row,
                "last_exit": st.last_exit, "status": st.status_text,
                "depends_on": list(d.depends_on),
                "events": [{"t": round(t.t, 6), "state": t.state.value, "reason": t.reason}
                           for t in list(st.history)[-10:]],
            })
        return out

    def history(self, sid: str) -> list[dict[str, Any]]:
        return [{"t": t.t, "state": t.state.value, "reason": t.reason}
                for t in self.core.status[self._known(sid)].history]

    def logs(self, sid: str, tail: int | None = None) -> list[str]:
        return self.rings[self._known(sid)].tail(tail)

    def follow_logs(self, sid: str, callback: Callable[[str], None]) -> Callable[[], None]:
        return self.rings[self._known(sid)].follow(callback)

    def set_log_dir(self, directory: Path) -> None:
        for sid, ring in self.rings.items():
            ring.open_file(directory / f"{sid}.log")

    def _open_log_dir(self, directory: Path) -> None:
        try:
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:  # policy: warn, keep logging to the rings only
            log.warning("service_log_dir_failed", path=str(directory), error=str(exc))
            return
        log.info("service_log_dir", path=str(directory))
        self.set_log_dir(directory)

    # -- carrying out the core's actions ---------------------------------------------

    def _apply(self, actions: list[c.Action]) -> None:
        # FIFO, never nested: actions that a spawn's outcome produces run after the
        # rest of the current batch, so events are recorded in the order they happened.
        self._queue.extend(actions)
        if self._applying:
            return
        self._applying = True
        try:
            while self._queue:
                action = self._queue.popleft()
                try:
                    self._do(action)
                except Exception:  # policy: one failed action must not stop the others
                    log.exception("service_action_failed", action=repr(action))
        finally:
            self._applying = False

    def _do(self, a: c.Action) -> None:
        if isinstance(a, c.Record):
            st = self.core.status.get(a.id)
            self.events.record(a.kind, a.id, a.state, a.reason, **a.fields)
            # A crash, a failure or bad health is worth a warning on the console.
            level = log.warning if a.state in ("backoff", "failed") or \
                a.reason.startswith("unhealthy") else log.info
            level("service_state" if a.kind == "service" else "service_health",
                  service=a.id, state=a.state, reason=a.reason, pid=st.pid if st else None)
            if self.log_dir_after and a.id == self.log_dir_after[0] and st is not None \
                    and a.state == "finished" and st.last_exit_ok:
                self._open_log_dir(self.log_dir_after[1])
        elif isinstance(a, c.Spawn):
            self._spawn(a.id)
        elif isinstance(a, c.Signal):
            self._signal(a.id, a.signum)
        elif isinstance(a, c.StartTimer):
            key = (a.id, a.name)
            if key in self._timers:
                self._timers[key].cancel()
            self._timers[key] = self.loop.call_later(a.delay, self._timer, a.id, a.name)
        elif isinstance(a, c.CancelTimer):
            timer = self._timers.pop((a.id, a.name), None)
            if timer is not None:
                timer.cancel()
        elif isinstance(a, c.StartProbe):
            probe = self.defs[a.id].readiness.probe
            assert probe is not None
            self._stop_probe(a.id)

            def on_result(ok: bool, msg: str, sid: str = a.id) -> None:
                self._apply(self.core.on_probe(sid, ok, msg, self.loop.clock()))
            prober = Prober(self.loop, probe, on_result)
            self._probers[a.id] = prober
            prober.start()
        elif isinstance(a, c.StopProbe):
            self._stop_probe(a.id)
        elif isinstance(a, c.AllStopped):
            self._all_stopped()

    def _timer(self, sid: str, name: str) -> None:
        self._timers.pop((sid, name), None)
        self._apply(self.core.on_timer(sid, name, self.loop.clock()))

    def _stop_probe(self, sid: str) -> None:
        prober = self._probers.pop(sid, None)
        if prober is not None:
            prober.stop()

    # -- processes ------------------------------------------------------------------------

    def _spawn(self, sid: str) -> None:
        d = self.defs[sid]
        now = self.loop.clock
        try:
            argv, env = resolve(d, self.paths.effective_config)
        except ConfigValueError as exc:
            self._apply(self.core.on_spawn_failed(sid, str(exc), now()))
            return
        cgroup = None
        if self.cgroups is not None:
            cgroup = self.cgroups.prepare(d.confinement.cgroup, sid, d.confinement.memory_max,
                                          nice=d.confinement.nice, cpu_weight=d.confinement.cpu_weight,
                                          kill_leftovers=d.kill_mode == "control-group")
        self._cgroup[sid] = cgroup
        full_env = {**self.base_env, **env, "NOTIFY_SOCKET": str(self.paths.notify_socket)}
        request = SpawnRequest(argv, full_env, d.working_directory, cgroup, d.confinement,
                               self.proc)
        try:
            pid, output = spawn(request)
        except SpawnError as exc:
            if exc.pid is not None:
                self.reaper.watch(exc.pid, lambda status: None)  # died before exec: reaped here
            self._apply(self.core.on_spawn_failed(sid, exc.reason, now()))
            return
        self.reaper.watch(pid, lambda status: self._exited(sid, status))
        old = self._outputs.pop(sid, None)
        if old is not None:  # a grandchild of the last run kept it open: stop reading it
            self.loop.remove_reader(old)
            os.close(old)
        self._outputs[sid] = output
        self.loop.add_reader(output, self._read_output, sid, output)
        log.debug("service_spawned", service=sid, pid=pid, argv=argv)
        self._apply(self.core.on_spawned(sid, pid, now()))

    def _read_output(self, sid: str, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.rings[sid].feed(data)
            return
        self.rings[sid].flush()
        self.loop.remove_reader(fd)
        os.close(fd)
        if self._outputs.get(sid) == fd:
            del self._outputs[sid]

    def _exited(self, sid: str, status: ExitStatus) -> None:
        # A message sent just before the exit (MAINPID= of a forking daemon, READY=1)
        # must count before the exit does, as systemd orders them.
        if self.notify is not None:
            self.notify.drain()
        st = self.core.status[sid]
        main = status.pid == st.pid
        if main and self.defs[sid].kill_mode == "control-group":
            # Nothing of a service outlives its main process.
            session = st.session
            if session is not None:
                _killpg(session, signal.SIGKILL)
            cgroup = self._cgroup.get(sid)
            if cgroup is not None and self.cgroups is not None:
                self.cgroups.kill(cgroup)
                self.loop.call_soon(self._remove_cgroup, sid, cgroup, 20)
        self._apply(self.core.on_exited(sid, status.pid, str(status), status.success,
                                        self.loop.clock()))

    def _remove_cgroup(self, sid: str, path: Path, tries: int) -> None:
        # cgroup.kill is asynchronous: retry briefly until the last process is gone.
        if self.core.status[sid].state in ACTIVE and self.core.status[sid].pid is not None:
            return  # started again meanwhile and uses it
        assert self.cgroups is not None
        if not self.cgroups.remove(path) and tries > 1:
            self.loop.call_later(0.05, self._remove_cgroup, sid, path, tries - 1)

    def _signal(self, sid: str, signum: int) -> None:
        """To the process group, the main pid and everything in the cgroup (kill_mode process: the main pid only)."""
        st = self.core.status[sid]
        if self.defs[sid].kill_mode == "process":
            if st.pid is not None:
                try:
                    os.kill(st.pid, signum)
                except ProcessLookupError:
                    pass
            return
        if st.session is not None:
            _killpg(st.session, signum)
        if st.pid is not None and st.pid != st.session:
            try:
                os.kill(st.pid, signum)
            except ProcessLookupError:
                pass
        cgroup = self._cgroup.get(sid)
        if cgroup is not None and self.cgroups is not None:
            self.cgroups.signal(cgroup, signum)

    # -- notify ---------------------------------------------------------------------------

    def _attribute(self, pid: int) -> str | None:
        """Which running service ``pid`` belongs to: main pid, session, or cgroup."""
        sid = self.core.service_for_session(pid)
        if sid is not None:
            return sid
        try:
            sid = self.core.service_for_session(os.getsid(pid))
        except OSError:
            sid = None
        if sid is not None:
            return sid
        if self.cgroups is not None:
            proc = self.proc
            for name, path in self._cgroup.items():
                if path is not None and self.core.status[name].state in ACTIVE \
                        and self.cgroups.contains(path, pid, proc):
                    return name
        return None

    def _on_notify(self, sid: str, fields: dict[str, str], pid: int) -> None:
        now = self.loop.clock()
        if "MAINPID" in fields:
            self._main_pid(sid, fields["MAINPID"], pid)
        if "STATUS" in fields:
            self.core.on_status(sid, fields["STATUS"])
        if fields.get("STOPPING") == "1":
            self.core.on_status(sid, "stopping")
            log.info("service_announced_stopping", service=sid)
        if fields.get("READY") == "1":
            self._apply(self.core.on_ready(sid, "READY=1 on NOTIFY_SOCKET", now))

    def _main_pid(self, sid: str, value: str, sender: int) -> None:
        try:
            pid = int(value)
        except ValueError:
            log.warning("notify_mainpid_rejected", service=sid, value=value, why="not a number")
            return
        if pid <= 1 or self._attribute(pid) != sid:
            log.warning("notify_mainpid_rejected", service=sid, value=value, sender=sender,
                        why="not a process of this service")
            return
        if pid != self.core.status[sid].pid:
            self.core.set_main_pid(sid, pid)
            self.reaper.watch(pid, lambda status: self._exited(sid, status))
            log.info("service_main_pid", service=sid, pid=pid)


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def create(ctx: Any) -> Supervisor:
    """init.py's factory: ``ctx`` has loop, reaper, events and paths (``InitContext``).

    An invalid service directory is logged error by error and recorded as
    events (kind "service", name "graph", state "invalid"), then raised as
    ``InvalidDefinitions``: nothing starts, and PID 1's phase failure policy
    decides what happens next.
    """
    from talos_init.service.definition import InvalidDefinitions
    from talos_init.service.loader import load_directory

    paths: Paths = ctx.paths
    if not paths.services.is_dir():
        # Policy: warn and run an empty graph (host-mode PID 1 tests have no image).
        log.warning("no_service_definitions", path=str(paths.services))
        definitions = []
    else:
        try:
            definitions = load_directory(paths.services)
        except InvalidDefinitions as exc:
            for error in exc.errors:
                log.error("service_definition_invalid", error=str(error))
                ctx.events.record("service", "graph", "invalid", str(error))
            raise
    ids = {d.id for d in definitions}
    return Supervisor(ctx.loop, ctx.reaper, ctx.events, definitions, paths,
                      cgroup_root=paths.at("/sys/fs/cgroup"),
                      log_dir_after=("var", paths.at("/var/log")) if "var" in ids else None)
