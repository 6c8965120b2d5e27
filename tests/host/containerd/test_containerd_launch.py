"""The launcher writes the config and execs the REAL containerd, which reports READY=1 itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from tests.host.realcontainerd import REPO, wait_ready


def test_real_containerd_starts_from_generated_config_and_notifies(tmp_path, short_dir):
    """Same pid as the launcher, containerd serves its socket with CRI loaded and sends READY=1."""
    notify_path = short_dir / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    address = short_dir / "containerd.sock"
    cni_conf = tmp_path / "cni/net.d"
    config = tmp_path / "machine.json"
    config.write_text('{"version": "v1alpha1", "machine": {"registries": {"mirrors": '
                      '{"docker.io": {"endpoints": ["http://127.0.0.1:5000"]}}}}, "cluster": {}}')
    argv = [sys.executable, "-I", "-m", "talos_init.containerd",
            "--machine-config", str(config),
            "--config", str(tmp_path / "etc/containerd/config.toml"),
            "--hosts-dir", str(tmp_path / "etc/containerd/certs.d"),
            "--root", str(tmp_path / "root"), "--state", str(short_dir / "state"),
            "--address", str(address), "--cni-conf-dir", str(cni_conf),
            "--customization", str(tmp_path / "none.part")]
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        messages = wait_ready(notify, timeout=90)
        assert address.is_socket()
        assert os.readlink(f"/proc/{proc.pid}/exe") == "/usr/bin/containerd"  # exec'd, same pid
        r = subprocess.run(["ctr", "--address", str(address), "plugins", "ls"],
                           capture_output=True, text=True, timeout=30)
        cri = [line for line in r.stdout.splitlines() if "io.containerd.grpc.v1" in line
               and " cri " in f" {line} "]
        assert cri and cri[0].split()[-1] == "ok", r.stdout
        assert (cni_conf / "99-talos-init-default.conflist").exists()
        assert (tmp_path / "etc/containerd/certs.d/docker.io/hosts.toml").exists()
        assert any("READY=1" in m for m in messages)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            out = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out = proc.communicate()[0]
        notify.close()
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]


def test_missing_containerd_binary_is_a_clear_failure(tmp_path, short_dir):
    """With no containerd binary the launcher exits 127 naming the path."""
    argv = [sys.executable, "-I", "-m", "talos_init.containerd",
            "--machine-config", str(tmp_path / "absent.json"),
            "--containerd", str(tmp_path / "no-containerd"),
            "--config", str(tmp_path / "config.toml"), "--hosts-dir", str(tmp_path / "certs.d"),
            "--root", str(tmp_path / "root"), "--state", str(short_dir / "state"),
            "--address", str(short_dir / "c.sock"), "--cni-conf-dir", str(tmp_path / "net.d")]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 127
    assert "containerd_exec_failed" in r.stdout + r.stderr and "no-containerd" in r.stdout + r.stderr


def test_missing_default_cni_conf_does_not_stop_containerd(tmp_path, short_dir):
    """An image without the default CNI conf still gets containerd (ready), with a warning."""
    notify_path = short_dir / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    argv = [sys.executable, "-I", "-m", "talos_init.containerd",
            "--machine-config", str(tmp_path / "absent.json"),
            "--config", str(tmp_path / "config.toml"), "--hosts-dir", str(tmp_path / "certs.d"),
            "--root", str(tmp_path / "root"), "--state", str(short_dir / "state"),
            "--address", str(short_dir / "c.sock"), "--cni-conf-dir", str(tmp_path / "net.d"),
            "--customization", str(tmp_path / "none.part"),
            "--default-cni", str(tmp_path / "no-such.conflist")]
    proc = subprocess.Popen(argv, env=dict(os.environ, NOTIFY_SOCKET=str(notify_path)), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_ready(notify, 90)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
        notify.close()
    assert "cni_default_missing" in out
    assert not list((tmp_path / "net.d").glob("*.conflist"))  # containerd makes the dir itself
