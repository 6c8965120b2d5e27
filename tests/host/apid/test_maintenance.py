"""Maintenance mode on a real apid process: no config yet, a self-signed key whose
fingerprint goes to the console, only the maintenance calls, and apply-config as the way
out (an invalid config is refused with line and column; a valid one ends the mode)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.userdata.pki import fill

ROOT = Path(__file__).resolve().parents[3]
GOOD = fill((ROOT / "tests/unit/userdata/fixtures/multidoc.yaml").read_text())
BAD = GOOD.replace("type: worker", "type: wroker")


class Maintenance:
    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        (self.root / "run/talos").mkdir(parents=True)
        self.marker = self.root / "run/talos/maintenance"
        self.marker.write_text("no talos.config=\n")
        self.config = self.root / "run/talos/config.json"
        self.kmsg = tmp / "kmsg"
        self.kmsg.touch()
        notify_path = tmp / "notify.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(60)
        self.log = tmp / "apid.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-m", "talos_init.apid", "--listen", "127.0.0.1:0",
                 "--config", str(self.config), "--root", str(self.root),
                 "--maintenance-marker", str(self.marker), "--kmsg", str(self.kmsg),
                 "--control-socket", str(tmp / "no-init.sock"), "--state-dir", str(tmp / "st")],
                env={**os.environ, "NOTIFY_SOCKET": str(notify_path)}, cwd=ROOT, stdout=log,
                stderr=subprocess.STDOUT)
        try:
            while True:
                msg = notify.recv(4096).decode()
                if "READY=1" in msg:
                    break
        except TimeoutError:
            self.proc.kill()
            raise AssertionError(self.log.read_text()) from None
        finally:
            notify.close()
        status = dict(line.split("=", 1) for line in msg.splitlines())["STATUS"]
        self.target = status.split(" on ", 1)[1].split(",", 1)[0]
        self.fingerprint = status.rsplit(" ", 1)[1]

    def osctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "talos_init.osctl", "-n", self.target, *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**os.environ, "OSCTLCONFIG": "/nonexistent"})

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(20)


@pytest.fixture
def node(tmp_path):
    m = Maintenance(tmp_path)
    yield m
    m.close()


def test_fingerprint_on_the_console_and_read_only_calls_work(node):
    console = node.kmsg.read_text()
    assert "MAINTENANCE MODE" in console
    assert f"certificate fingerprint (SHA-256 SPKI): {node.fingerprint}" in console
    r = node.osctl("--insecure", "-o", "json", "version")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name"] == "talos-init"
    assert f"certificate fingerprint (SHA-256 SPKI) {node.fingerprint}, not checked" in r.stderr
    r = node.osctl("--insecure", "--cert-fingerprint", node.fingerprint, "-o", "json", "disks")
    assert r.returncode == 0, r.stderr
    assert "fingerprint" not in r.stderr  # pinned and matched: nothing to say
    disks = json.loads(r.stdout)
    assert isinstance(disks, list)
    for d in disks:
        assert {"name", "size", "model", "serial", "transport"} <= set(d)
        assert not d["name"].startswith(("loop", "ram", "zram"))
    for call in ("interfaces", "routes"):
        assert node.osctl("--insecure", call).returncode == 0


def test_everything_else_is_refused_in_maintenance_mode(node):
    for args in (["reboot"], ["shutdown"], ["services"], ["read", "/etc/hostname"],
                 ["get", "config"], ["ls", "/"]):
        r = node.osctl("--insecure", *args)
        assert r.returncode == 1, (args, r.stdout)
        assert "node is in maintenance mode" in r.stderr, (args, r.stderr)


def test_a_wrong_fingerprint_is_refused_before_any_call(node):
    wrong = "A" * 43 + "="
    r = node.osctl("--insecure", "--cert-fingerprint", wrong, "apply-config", "-f", "-")
    assert r.returncode == 1
    assert f"certificate fingerprint {node.fingerprint} does not match --cert-fingerprint" in r.stderr
    assert not node.config.exists()
    r = node.osctl("--insecure", "--cert-fingerprint", "nonsense", "version")
    assert r.returncode == 1 and "expected the SHA-256 fingerprint" in r.stderr
    r = node.osctl("--cert-fingerprint", node.fingerprint, "version")
    assert r.returncode == 1 and "use it with --insecure" in r.stderr


def test_invalid_config_is_refused_with_line_and_column_then_a_valid_one_ends_it(node, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    r = node.osctl("--insecure", "apply-config", "-f", str(bad))
    assert r.returncode == 1
    line = next(n for n, text in enumerate(BAD.splitlines(), 1) if "wroker" in text)
    assert f"{bad}:{line}:" in r.stderr and "machine.type: 'wroker'" in r.stderr, r.stderr
    assert "nothing was applied" in r.stderr
    assert not node.config.exists() and node.proc.poll() is None  # still in maintenance
    assert node.osctl("--insecure", "version").returncode == 0
    good = tmp_path / "worker.yaml"
    good.write_text(GOOD)
    r = node.osctl("--insecure", "--cert-fingerprint", node.fingerprint, "apply-config", "-f",
                   str(good), "--dry-run")
    assert r.returncode == 0 and "nothing applied (dry run)" in r.stdout, r.stdout + r.stderr
    assert not node.config.exists()
    r = node.osctl("--insecure", "--cert-fingerprint", node.fingerprint, "apply-config", "-f",
                   str(good))
    assert r.returncode == 0, r.stderr
    assert "config applied (worker)" in r.stdout
    assert (node.root / "run/talos/config.yaml").read_text() == GOOD
    assert json.loads(node.config.read_text())["machine"]["type"] == "worker"
    assert (node.root / "run/talos/config.source").read_text() == "apply-config\n"
    # apid leaves maintenance mode by exiting; the supervisor restarts it with the config's CA.
    assert node.proc.wait(30) == 0
    assert "apid_leaving_maintenance" in node.log.read_text()
