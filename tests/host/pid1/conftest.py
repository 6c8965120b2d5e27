"""Fixtures for PID 1 host tests: private mount namespaces and init as a child process."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from talos_init import proctree, syscalls

REPO = Path(__file__).resolve().parents[3]


def in_private_namespace(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a forked child with its own mount and cgroup namespaces.

    The child makes every mount private first, so nothing it mounts reaches the
    host; the cgroup namespace keeps cgroup2 root options (nsdelegate) from
    being applied to the host's hierarchy. Returns fn's JSON-able result.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(r)
            syscalls.unshare(syscalls.CLONE_NEWNS | syscalls.CLONE_NEWCGROUP)
            syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
            out = {"result": fn(*args)}
        except BaseException:
            out = {"error": traceback.format_exc()}
            code = 1
        try:
            os.write(w, json.dumps(out, default=str).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)  # the test process, not PID 1: waiting here is fine
    out = json.loads(b"".join(chunks) or b'{"error": "child wrote nothing"}')
    if "error" in out:
        pytest.fail(f"in the private namespace:\n{out['error']}")
    return out["result"]


class InitProcess:
    """``python -m talos_init`` in host mode, its JSON-lines log parsed as it comes."""

    def __init__(self, root: Path, *args: str):
        self.root = root
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._buf = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "talos_init", "--root", str(root), "--subreaper", "--json",
             *args],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, timeout: float) -> bool:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return True
        data = os.read(fd, 65536)
        if not data:
            return False
        self._buf += data
        *complete, self._buf = self._buf.split(b"\n")
        for line in complete:
            text = line.decode(errors="replace")
            self.raw.append(text)
            try:
                self.lines.append(json.loads(text))
            except ValueError:
                pass  # a traceback line printed outside the logger
        return True

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict:
        """The first log event matching ``predicate``, waiting for it if need be."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if predicate(line):
                    return line
            seen = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)):
                if any(predicate(line) for line in self.lines[seen:]):
                    continue
                raise AssertionError(f"no matching log event; log so far:\n{self.log_text()}")

    def wait_phase(self, name: str, state: str, timeout: float = 30) -> dict:
        return self.wait_for(lambda e: e.get("event") == "phase" and e.get("name") == name
                             and e.get("state") == state, timeout)

    def wait_exit(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, min(0.5, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                break
        return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))

    def phases(self) -> list[tuple[str, str]]:
        return [(e["name"], e["state"]) for e in self.lines if e.get("event") == "phase"]

    def log_text(self) -> str:
        return "\n".join(self.raw[-200:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            # Whatever it started must not outlive the test either.
            for pid in proctree.descendants(proctree.snapshot(), self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def start_init(tmp_path):
    """Start init children in host mode; each is killed at the end if still running."""
    started: list[InitProcess] = []

    def start(*args: str, cmdline: str | None = "talos.hostname=node-1") -> InitProcess:
        root = tmp_path / f"root{len(started)}"
        root.mkdir()
        if cmdline is not None:
            (root / "cmdline").write_text(cmdline + "\n")
        init = InitProcess(root, "--cmdline", str(root / "cmdline"), *args)
        started.append(init)
        return init

    yield start
    for init in started:
        init.stop()
