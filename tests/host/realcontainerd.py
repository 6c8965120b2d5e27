"""A real containerd started by our launcher, for the containerd and kubelet host tests.

Short temp dirs for unix sockets, READY=1 waiting, a clean stop. Test packages
use it by importing the fixtures into their conftest.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_dir():
    # unix socket paths are limited to 108 bytes: pytest's tmp_path is too deep.
    d = Path(tempfile.mkdtemp(prefix="ctd-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def wait_ready(sock: socket.socket, timeout: float) -> list[str]:
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            break
        got.append(msg)
        if "READY=1" in msg.split("\n"):
            return got
    raise AssertionError(f"no READY=1 within {timeout}s; got {got}")


def stop(proc: subprocess.Popen) -> bytes:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)[0] or b""
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()[0] or b""


@pytest.fixture
def containerd_customization() -> str:
    """TOML for the launcher's customization import (Talos' CRI hook); a module may override it."""
    return ""


@pytest.fixture
def containerd(tmp_path, short_dir, containerd_customization):
    """The real containerd, started through talos_init.containerd and ready; yields its socket."""
    customization = tmp_path / "none.part"
    if containerd_customization:
        customization = tmp_path / "customization.part"
        customization.write_text(containerd_customization)
    notify_path = short_dir / "n.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    address = short_dir / "c.sock"
    argv = [sys.executable, "-I", "-m", "talos_init.containerd",
            "--machine-config", str(tmp_path / "absent.json"),
            "--config", str(tmp_path / "config.toml"), "--hosts-dir", str(tmp_path / "certs.d"),
            "--root", str(tmp_path / "root"), "--state", str(short_dir / "state"),
            "--address", str(address), "--cni-conf-dir", str(tmp_path / "cni"),
            "--customization", str(customization)]
    proc = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ, NOTIFY_SOCKET=str(notify_path)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_ready(notify, 90)
        yield address
    finally:
        stop(proc)
        notify.close()
