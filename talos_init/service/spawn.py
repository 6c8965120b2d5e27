"""Start one service process: fork, confine the child, exec. Never waits.

The Reaper owns every wait; the caller must ``reaper.watch(pid, ...)`` before
returning to the loop. The child reports a failure before exec (bad
directory, missing program, cgroup refused) through a close-on-exec pipe, as
``subprocess`` does, so a spawn error names the step that failed. ctypes is
imported only in the child, so PID 1 itself stays small.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from talos_init.record import field, record
from talos_init.service.definition import RLIMITS, Confinement


class SpawnError(Exception):
    def __init__(self, reason: str, pid: int | None = None):
        super().__init__(reason)
        self.reason, self.pid = reason, pid


@record(frozen=True)
class SpawnRequest:
    argv: list[str]
    env: dict[str, str]
    cwd: str = "/"
    cgroup: Path | None = None  # join <cgroup>/cgroup.procs before anything else
    confinement: Confinement = field(default_factory=Confinement)
    proc: Path = Path("/proc")


def spawn(req: SpawnRequest) -> tuple[int, int]:
    """Fork and exec; returns (pid, read end of the stdout+stderr pipe)."""
    argv = [os.fsencode(a) for a in req.argv]
    env = {os.fsencode(k): os.fsencode(v) for k, v in req.env.items()}
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        raise SpawnError(f"fork: {exc.strerror}") from None
    if pid == 0:  # pragma: no cover - runs in the child, reported through err_w
        step = "setup"
        try:
            for step, do in _child_steps(req, out_w, err_w):  # noqa: B007 - step names a failure
                do()
            step = f"exec {req.argv[0]}"
            os.execve(argv[0], argv, env)
        except BaseException as exc:  # noqa: BLE001 - the child reports everything, then exits
            message = f"{step}: {getattr(exc, 'strerror', None) or exc}"
            try:
                os.write(err_w, message.encode("utf-8", "replace")[:1000])
            finally:
                os._exit(127)
    os.close(out_w)
    os.close(err_w)
    try:
        chunks = []
        while chunk := os.read(err_r, 1024):  # EOF at exec: blocks only until then
            chunks.append(chunk)
    finally:
        os.close(err_r)
    if chunks:
        os.close(out_r)
        raise SpawnError(b"".join(chunks).decode("utf-8", "replace"), pid)
    os.set_blocking(out_r, False)
    return pid, out_r


def _child_steps(req: SpawnRequest, out_w: int, err_w: int):  # pragma: no cover - child only
    c = req.confinement

    def reset_signals() -> None:
        signal.set_wakeup_fd(-1)
        for sig in signal.valid_signals():
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE; services must not
                except (OSError, ValueError):
                    pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])

    def join_cgroup() -> None:
        if req.cgroup is not None:
            (req.cgroup / "cgroup.procs").write_text(str(os.getpid()))

    def oom() -> None:
        if c.oom_score_adj is not None:
            (req.proc / "self/oom_score_adj").write_text(str(c.oom_score_adj))

    def nice() -> None:
        if c.nice is not None:  # absolute, not relative to PID 1's; needs CAP_SYS_NICE below 0
            os.setpriority(os.PRIO_PROCESS, 0, c.nice)

    def rlimits() -> None:
        import resource
        for name, value in c.rlimits.items():
            resource.setrlimit(getattr(resource, RLIMITS[name]), (value, value))

    def stdio() -> None:
        stdin_r, stdin_w = os.pipe()  # stdin at EOF, even before /dev is mounted
        os.close(stdin_w)
        os.dup2(stdin_r, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        for fd in (stdin_r, out_w):
            if fd > 2:
                os.close(fd)
        os.closerange(3, err_w)
        os.closerange(err_w + 1, 65536)

    def identity_and_caps() -> None:
        keep = c.kept_capabilities()
        if keep is None and c.user is None and c.group is None:
            return
        from talos_init.service import caps
        if keep is not None:
            caps.drop_bounding(keep)
        if c.group is not None:
            os.setgroups([])
            os.setgid(c.group)
        if c.user is not None:
            if keep:
                caps.keep_caps_on_setuid()
            os.setuid(c.user)
        if keep is not None:
            caps.set_capabilities(keep, ambient=bool(c.user))

    def no_new_privs() -> None:
        if c.no_new_privs:
            from talos_init.service import caps
            caps.no_new_privs()

    return [
        ("reset signals", reset_signals),
        ("new session", os.setsid),
        (f"join cgroup {req.cgroup}", join_cgroup),
        ("oom_score_adj", oom),
        (f"nice {c.nice}", nice),
        ("rlimits", rlimits),
        ("stdio", stdio),
        ("user, group and capabilities", identity_and_caps),
        ("no_new_privs", no_new_privs),
        (f"chdir {req.cwd}", lambda: os.chdir(req.cwd)),
    ]
