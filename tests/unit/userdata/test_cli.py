"""osctl validate: the node's validator on a workstation, same messages, meaningful exit codes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from talos_init.userdata.cli import EXIT_INVALID, EXIT_USAGE, EXIT_VALID, validate_cli

ROOT = Path(__file__).resolve().parents[3]


def run(argv):
    out = io.StringIO()
    code = validate_cli(argv, out)
    return code, out.getvalue()


def test_valid_config_exits_zero():
    """A shipped config validates with exit 0 and a one-line summary."""
    code, out = run([str(ROOT / "configs/worker.yaml")])
    assert code == EXIT_VALID
    assert out.strip().endswith("valid worker config (0 fields accepted but not supported here)")


def test_invalid_config_lists_every_error(tmp_path):
    """Errors print as FILE:LINE:COL: path: message, then a count, exit 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "configs/worker.yaml")
        .read_text()
        .replace("type: worker", "type: nope")
        .replace("disk: /dev/vda", "disk: vda")
    )
    code, out = run([str(bad)])
    lines = out.strip().splitlines()
    line = bad.read_text().splitlines().index("    type: nope") + 1
    assert code == EXIT_INVALID
    assert lines[0] == f"{bad}:{line}:11: machine.type: 'nope' is not one of controlplane, worker"
    assert (
        lines[1].startswith(f"{bad}:")
        and "machine.install.disk: 'vda' is not a device path" in lines[1]
    )
    assert lines[-1] == f"{bad}: invalid: 2 errors"


def test_unreadable_file_and_usage(tmp_path):
    """A missing file or no argument exits 2 with the reason."""
    code, out = run([str(tmp_path / "missing.yaml")])
    assert code == EXIT_USAGE and "cannot read: No such file or directory" in out
    assert run([])[0] == EXIT_USAGE


def test_standalone_module_runs():
    """python -m talos_init.userdata.cli FILE works without osctl."""
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-m",
            "talos_init.userdata.cli",
            str(ROOT / "configs/controlplane.yaml"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "valid controlplane config" in proc.stdout
