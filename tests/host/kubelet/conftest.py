"""A real containerd (through our launcher) for the kubelet stand-in to find, in a short temp dir."""

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

REPO = Path(__file__).resolve().parents[3]
STANDIN = REPO / "tests/kubelet_standin/kubelet.py"


@pytest.fixture
def short_dir():
    d = Path(tempfile.mkdtemp(prefix="kub-", dir="/tmp"))  # unix socket paths: 108 bytes at most
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def wait_ready(sock: socket.socket, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    got = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            break
        got.append(msg)
        if "READY=1" in msg.split("\n"):
            return msg
    raise AssertionError(f"no READY=1 within {timeout}s (got {got})")


def stop(proc: subprocess.Popen) -> bytes:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)[0] or b""
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()[0] or b""


@pytest.fixture
def containerd(tmp_path, short_dir):
    """The real containerd, started by talos_init.containerd and ready; yields its socket path."""
    notify_path = short_dir / "ctd-notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    address = short_dir / "containerd.sock"
    argv = [sys.executable, "-I", "-m", "talos_init.containerd",
            "--machine-config", str(tmp_path / "absent.json"),
            "--config", str(tmp_path / "containerd/config.toml"),
            "--hosts-dir", str(tmp_path / "containerd/certs.d"),
            "--root", str(tmp_path / "containerd/root"), "--state", str(short_dir / "ctd"),
            "--address", str(address), "--cni-conf-dir", str(tmp_path / "cni"),
            "--customization", str(tmp_path / "none.part")]
    proc = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ, NOTIFY_SOCKET=str(notify_path)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(notify, 90)
        yield address
    finally:
        stop(proc)
        notify.close()


@pytest.fixture
def fake_kubelet(tmp_path):
    """The stand-in installed as an executable 'kubelet' in tmp_path, byte for byte as an image
    gets it: its own shebang runs it with the system /usr/bin/python3.11."""
    path = tmp_path / "bin/kubelet"
    path.parent.mkdir()
    shutil.copyfile(STANDIN, path)
    path.chmod(0o755)
    return path
