"""A real containerd started from our static config (paths moved into temp dirs), for the
containerd and kubelet host tests.

Short temp dirs for unix sockets, READY=1 waiting, a clean stop. Test packages
use it by importing the fixtures into their conftest.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
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


def containerd_argv(tmp_path: Path, short_dir: Path) -> tuple[list[str], Path]:
    """argv running /usr/bin/containerd on the image's config with its paths under the temp
    dirs (the service's argv, but --config names this copy), and the socket it will serve."""
    from talos_init.containerd.config import Layout, render

    address = short_dir / "c.sock"
    layout = Layout(config=tmp_path / "config.toml", hosts_dir=tmp_path / "certs.d",
                    root=tmp_path / "root", state=short_dir / "state", address=address,
                    cni_conf_dir=tmp_path / "cni", imports=str(tmp_path / "conf.d/*.part"),
                    cni_bin_dir=Path("/usr/lib/cni"))  # the host's Debian plugins
    layout.config.write_text(render(layout))
    return ["/usr/bin/containerd", "--config", str(layout.config)], address


@pytest.fixture
def containerd_customization() -> str:
    """TOML for the CRI customization import (Talos' hook, /etc/cri/conf.d/*.part); a module may override it."""
    return ""


@pytest.fixture
def containerd(tmp_path, short_dir, containerd_customization):
    """The real containerd on our config, ready; yields its socket."""
    if containerd_customization:
        (tmp_path / "conf.d").mkdir(exist_ok=True)
        (tmp_path / "conf.d" / "20-customization.part").write_text(containerd_customization)
    notify_path = short_dir / "n.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    argv, address = containerd_argv(tmp_path, short_dir)
    proc = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ, NOTIFY_SOCKET=str(notify_path)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_ready(notify, 90)
        yield address
    finally:
        stop(proc)
        notify.close()
