"""machine-setup writes containerd's registry hosts and restarts containerd through PID 1's
control socket only when it wrote a CRI customization (containerd reads that only at start)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CUSTOM = "/etc/cri/conf.d/20-customization.part"


def _run(tmp_path: Path, machine: dict, control_socket: Path) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"version": "v1alpha1", "machine": machine, "cluster": {}}))
    (tmp_path / "proc/sys").mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-I", "-m", "talos_init.machinesetup", str(cfg),
            "--proc-sys", str(tmp_path / "proc/sys"), "--root", str(tmp_path / "root"),
            "--hosts-dir", str(tmp_path / "certs.d"), "--control-socket", str(control_socket),
            "--product-uuid", str(tmp_path / "product_uuid")]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)


MIRRORS = {"registries": {"mirrors": {"docker.io": {"endpoints": ["http://127.0.0.1:5000"]}},
                          "config": {"127.0.0.1:5000": {"tls": {"insecureSkipVerify": True}}}}}


def test_mirrors_become_hosts_files_without_restarting_containerd(make_server, tmp_path):
    """Registry mirrors are hosts.toml files; containerd reads them per pull, so no restart."""
    restarts = []
    server = make_server(services__restart=lambda params: restarts.append(params) or
                         {"id": params["id"], "state": "starting", "want": "up", "reason": ""})
    r = _run(tmp_path, MIRRORS, server.path)
    assert r.returncode == 0, r.stdout + r.stderr
    hosts = tomllib.loads((tmp_path / "certs.d/docker.io/hosts.toml").read_text())
    assert hosts["host"]["http://127.0.0.1:5000"]["skip_verify"] is True
    assert restarts == []


def test_cri_customization_restarts_containerd(make_server, tmp_path):
    """Writing /etc/cri/conf.d/20-customization.part asks PID 1 to restart containerd once."""
    restarts = []
    server = make_server(services__restart=lambda params: restarts.append(params) or
                         {"id": params["id"], "state": "starting", "want": "up", "reason": ""})
    files = [{"path": CUSTOM, "content": "[metrics]\n  address = \"127.0.0.1:1338\"\n",
              "permissions": 0o644, "op": "create"}]
    r = _run(tmp_path, {**MIRRORS, "files": files}, server.path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert restarts == [{"id": "containerd"}]
    assert "containerd_restarted" in r.stdout + r.stderr
    assert (tmp_path / "root" / CUSTOM.lstrip("/")).read_text().startswith("[metrics]")


def test_restart_that_cannot_be_asked_fails_the_service(tmp_path):
    """No control socket: the customization is written but the service exits 1 saying why."""
    files = [{"path": CUSTOM, "content": "[metrics]\n", "permissions": 0o644, "op": "create"}]
    r = _run(tmp_path, {"files": files}, tmp_path / "no.sock")
    assert r.returncode == 1
    assert "containerd_restart_failed" in r.stdout + r.stderr and "no.sock" in r.stdout + r.stderr


def test_bad_mirror_fails_the_service_naming_it(make_server, tmp_path):
    """A mirror endpoint that is not an http(s) URL is an error naming it; exit 1."""
    server = make_server()
    bad = {"registries": {"mirrors": {"ghcr.io": {"endpoints": ["ftp://x"]}}}}
    r = _run(tmp_path, bad, server.path)
    assert r.returncode == 1 and "mirrors.ghcr.io.endpoints[0]" in r.stdout + r.stderr


def test_machine_id_is_written_and_kept_on_var(tmp_path):
    """No SMBIOS UUID: /etc/machine-id is generated once, kept on /var, the same on a rerun."""
    r = _run(tmp_path, {}, tmp_path / "no.sock")
    assert r.returncode == 0, r.stdout + r.stderr
    first = (tmp_path / "root/etc/machine-id").read_text()
    assert first == (tmp_path / "root/var/lib/talos/machine-id").read_text()
    assert "source=generated" in r.stdout + r.stderr
    (tmp_path / "root/etc/machine-id").unlink()
    r = _run(tmp_path, {}, tmp_path / "no.sock")
    assert r.returncode == 0 and "source=stored" in r.stdout + r.stderr
    assert (tmp_path / "root/etc/machine-id").read_text() == first
