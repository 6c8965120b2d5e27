"""The userdata service as a real process: waits without a URL, survives bad configs, writes a good one."""

from __future__ import annotations

import json
import os
import queue
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from talos_init.paths import Paths
from talos_init.userdata.apply import apply_config
from tests.host.userdata.conftest import reply
from tests.unit.userdata.pki import fill

ROOT = Path(__file__).resolve().parents[3]
GOOD = fill((ROOT / "tests/unit/userdata/fixtures/multidoc.yaml").read_text()).encode()
BAD = GOOD.replace(b"type: worker", b"type: wroker").replace(b"dhcp: true", b"dhcp: maybe")


class Service:
    """``python -I -m talos_init.userdata --root TMP`` with its stderr lines and notify messages collected."""

    def __init__(self, root: Path, cmdline: str) -> None:
        (root / "proc").mkdir(parents=True)
        (root / "proc/cmdline").write_text(cmdline + "\n")
        (root / "sys").mkdir()
        self.notify_path = root / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.2)
        self.messages: list[str] = []
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        env = {"PATH": os.environ.get("PATH", ""), "NOTIFY_SOCKET": str(self.notify_path)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-m",
                "talos_init.userdata",
                "--root",
                str(root),
                "--retry-interval",
                "0.2",
                "0.4",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd="/",
            text=True,
        )
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, text: str, timeout: float = 60) -> str:
        """Wait for a stderr line containing text."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}; got:\n" + "\n".join(self.seen))

    def drain_notify(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return self.messages

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        self.pump.join(10)  # EOF on stderr once the process is gone
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        self.notify.close()


@pytest.fixture
def service(tmp_path):
    started: list[Service] = []

    def start(cmdline: str) -> Service:
        s = Service(tmp_path / "root", cmdline)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def test_no_config_url_waits_and_says_so(service):
    """Without talos.config= the service says so, reports STATUS, and stays running not-ready."""
    s = service("console=ttyS0 quiet")
    s.wait_line("no machine config: the kernel command line has no talos.config=URL")
    deadline = time.monotonic() + 10
    while not any(m.startswith("STATUS=no machine config") for m in s.drain_notify()):
        assert time.monotonic() < deadline, s.messages
    assert s.proc.poll() is None
    assert not any("READY=1" in m for m in s.messages)


def test_apply_config_ends_the_wait(service, tmp_path):
    """Waiting without a URL, the service finishes (exit 0, READY=1) once apply-config writes a config."""
    s = service("console=ttyS0")
    s.wait_line("no machine config")
    result = apply_config(BAD, Paths(tmp_path / "root"))
    assert result.config is None and not (tmp_path / "root/run/talos/config.json").exists()
    assert apply_config(GOOD, Paths(tmp_path / "root")).ok
    assert s.proc.wait(60) == 0
    s.wait_line("machine config applied through the API (worker)")
    assert any(m.startswith("READY=1") for m in s.drain_notify())


def test_broken_config_is_reported_then_fixed_without_restart(service, http_server, tmp_path):
    """404, then an invalid config (every error shown), then a fixed one: the same process writes it and exits 0."""
    http_server.play(reply(404))
    s = service(f"talos.config={http_server.url()} console=ttyS0")
    s.wait_line("HTTP 404 Not Found")
    http_server.play(reply(200, BAD))
    assert "machine.type: 'wroker' is not one of controlplane, worker" in s.wait_line(
        "machine.type"
    )
    s.wait_line("machine.network.interfaces[0].dhcp: expected true or false")
    s.wait_line("the machine config is invalid: 2 errors")
    assert s.proc.poll() is None
    http_server.play(reply(200, GOOD))
    assert s.proc.wait(60) == 0
    run = tmp_path / "root/run/talos"
    assert (run / "config.yaml").read_bytes() == GOOD
    effective = json.loads((run / "config.json").read_text())
    assert (
        effective["version"] == "v1alpha1"
        and effective["machine"]["network"]["hostname"] == "worker-7"
    )
    for name in ("config.yaml", "config.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o600
    assert sorted(os.listdir(run)) == ["config.json", "config.source", "config.yaml"]  # no temp files
    assert any(m.startswith("READY=1") for m in s.drain_notify())


def test_file_url_inside_the_root(service, tmp_path):
    """talos.config=file:///... reads the path inside the node's root (the initramfs)."""
    cfg = tmp_path / "root/usr/lib/talos/embedded.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_bytes(GOOD)
    s = service("talos.config=file:///usr/lib/talos/embedded.yaml")
    assert s.proc.wait(60) == 0
    assert (tmp_path / "root/run/talos/config.yaml").read_bytes() == GOOD


def test_a_stored_config_wins_over_the_url(service, tmp_path):
    """A config kept on STATE is read first: the service is ready without fetching (the URL
    points at a closed port) and says where the config came from; a staged one wins first."""
    from talos_init.userdata.configstore import Store

    st = Store(tmp_path / "root/system/state")
    st.save(GOOD, "boot", "talos.config=")
    staged = GOOD.replace(b"type: worker", b"type: worker\n  # staged")
    st.stage(staged, "apply-config")
    s = service("talos.config=http://127.0.0.1:9/never")
    assert s.proc.wait(60) == 0
    line = s.wait_line("machine config read from the install disk")
    assert "version 2, staged from apply-config" in line
    assert (tmp_path / "root/run/talos/config.yaml").read_bytes() == staged
    assert (tmp_path / "root/run/talos/config.source").read_text() == "store\n"
    assert st.staged() is None and st.load()["config"] == staged
    assert not any("fetch" in line for line in s.seen)


def test_an_invalid_stored_config_falls_back_to_the_url(service, tmp_path, http_server):
    from talos_init.userdata.configstore import Store

    Store(tmp_path / "root/system/state").save(BAD, "boot", "talos.config=")
    http_server.play(reply(200, GOOD))
    s = service(f"talos.config={http_server.url()}")
    s.wait_line("the stored machine config is invalid")
    assert s.proc.wait(60) == 0
    assert (tmp_path / "root/run/talos/config.source").read_text() == "url\n"


def test_a_404_config_url_enters_maintenance_and_apply_config_ends_it(service, http_server, tmp_path):
    """As Talos: a URL answering 404 means no config; the maintenance marker tells apid to
    serve maintenance mode, and a config applied meanwhile ends the wait (exit 0)."""
    http_server.play(reply(404))
    s = service(f"talos.config={http_server.url()}")
    s.wait_line("HTTP 404")
    marker = tmp_path / "root/run/talos/maintenance"
    s.wait_line("retrying in")
    assert "404" in marker.read_text()
    assert apply_config(GOOD, Paths(tmp_path / "root")).ok
    assert s.proc.wait(60) == 0
    s.wait_line("machine config applied through the API")
    assert (tmp_path / "root/run/talos/config.source").read_text() == "apply-config\n"


def test_no_url_writes_the_maintenance_marker(service, tmp_path):
    s = service("console=ttyS0")
    s.wait_line("no machine config")
    marker = tmp_path / "root/run/talos/maintenance"
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "no talos.config=" in marker.read_text()


def test_a_fetch_waits_for_networkd_to_say_ready(tmp_path):
    """--wait-network: nothing is fetched until networkd's status.json says ready (the
    service has no networkd edge, so that a stored config needs no network)."""
    from talos_init.userdata.__main__ import network_waiter

    status = tmp_path / "status.json"
    said: list[str] = []
    done = threading.Event()

    def wait() -> None:
        network_waiter(status, lambda m: said.append(m) or True, poll=0.01)()
        done.set()

    t = threading.Thread(target=wait, daemon=True)
    t.start()
    status.write_text(json.dumps({"ready": False}))
    deadline = time.monotonic() + 10
    while not said:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not done.is_set() and said == ["STATUS=waiting for the network (networkd) to fetch the config"]
    status.write_text(json.dumps({"ready": True}))
    assert done.wait(10)
