"""osctl never lets a service's escape sequences reach the operator's terminal (issue #22, finding 9)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from .conftest import ROOT

HOSTILE = "boot ok\x1b]0;owned\x07\x1b[2J\x9b31m done"


def _on_a_terminal(node, *args: str) -> str:
    """osctl's stdout is a real pseudo-terminal; what the terminal would have received."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "talos_init.osctl", *args], stdout=slave,
                                stderr=subprocess.PIPE, cwd=ROOT)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not chunk:
                break
            out += chunk
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        return out.decode()
    finally:
        os.close(master)


def test_control_characters_are_escaped_on_a_terminal_and_raw_elsewhere(node):
    """On a terminal ESC, BEL and CSI show as \\x1b, \\x07, \\x9b; piped and -o json keep the bytes."""
    node.supervisor.logs["containerd"].append(HOSTILE)
    config = str(node.osctlconfig("reader", ["os:reader"]))
    shown = _on_a_terminal(node, "--osctlconfig", config, "logs", "containerd", "--tail", "1")
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown, repr(shown)
    assert "boot ok\\x1b]0;owned\\x07\\x1b[2J\\x9b31m done" in shown, repr(shown)

    piped = node.osctl(node.osctlconfig("reader", ["os:reader"]), "logs", "containerd", "--tail", "1")
    assert piped.stdout == HOSTILE + "\n"
    as_json = _on_a_terminal(node, "--osctlconfig", config, "-o", "json", "logs", "containerd",
                             "--tail", "1")
    assert json.loads(as_json)["line"] == HOSTILE
