"""machine-setup loads machine.kernel.modules (KernelModuleConfig) with their parameters.

modprobe is a stand-in here (loading modules into the shared host kernel is not a test's
to do); tests/e2e/test_multidoc_e2e.py loads a real module in QEMU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parents[3]


def _modprobe(tmp_path: Path) -> Path:
    script = tmp_path / "modprobe"
    script.write_text(f"#!{sys.executable}\n"
                      "import json, sys\n"
                      f"open({str(tmp_path / 'calls')!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                      "sys.exit(1 if 'missing' in sys.argv else 0)\n")
    script.chmod(0o755)
    return script


def _run(tmp_path: Path, modules: list[dict]) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"version": "v1alpha1", "cluster": {},
                               "machine": {"kernel": {"modules": modules}}}))
    (tmp_path / "proc/sys").mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-I", "-m", "talos_init.machinesetup", str(cfg),
            "--proc-sys", str(tmp_path / "proc/sys"), "--root", str(tmp_path / "root"),
            "--hosts-dir", str(tmp_path / "certs.d"), "--control-socket", str(tmp_path / "c.sock"),
            "--modprobe", str(_modprobe(tmp_path))]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)


def _calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "calls").read_text().splitlines()]


def test_modules_are_loaded_with_their_parameters(tmp_path):
    r = _run(tmp_path, [{"name": "bonding", "parameters": ["max_bonds=0", "miimon=100"]},
                        {"name": "veth", "parameters": []}])
    assert r.returncode == 0, r.stdout + r.stderr
    assert _calls(tmp_path) == [["--", "bonding", "max_bonds=0", "miimon=100"], ["--", "veth"]]
    assert "kernel_module_loaded" in r.stdout + r.stderr


def test_a_module_that_fails_fails_the_service_after_the_others(tmp_path):
    r = _run(tmp_path, [{"name": "missing", "parameters": []}, {"name": "veth", "parameters": []}])
    assert r.returncode == 1
    assert _calls(tmp_path) == [["--", "missing"], ["--", "veth"]]
    assert "kernel_module_failed" in r.stdout + r.stderr and "module=missing" in r.stdout + r.stderr
