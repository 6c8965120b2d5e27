"""The image policy: no shell, no other interpreter, no setuid/setgid file, each named."""

import shutil
from pathlib import Path

import pytest

from initramfs import policy
from initramfs.tree import Tree


def _base() -> Tree:
    t = Tree()
    t.mkdir("/usr/bin", "layout")
    t.add_symlink("/bin", "usr/bin", "layout")
    t.add_file("/usr/bin/python3.11", "python", data=b"\x7fELF fake interpreter", mode=0o755)
    t.add_file("/init", "init", data=b"#!/usr/bin/python3.11 -I\nimport runpy\n", mode=0o755)
    return t


def _violations(t: Tree) -> dict[str, str]:
    return {v.path: v.reason for v in policy.check(t, t.resolve)}


def test_clean_tree_passes():
    """The interpreter and a #! script for it are allowed."""
    assert _violations(_base()) == {}


@pytest.mark.parametrize("name", ["sh", "bash", "dash", "busybox", "perl", "perl5.36", "python3",
                                  "python3.12", "lua5.4", "awk"])
def test_shell_or_interpreter_by_name_is_named(name):
    """A file called like a shell or interpreter is refused with its path."""
    t = _base()
    t.add_file(f"/usr/bin/{name}", "planted", data=b"\x7fELF", mode=0o755)
    assert "shell or interpreter" in _violations(t)[f"/usr/bin/{name}"]


def test_symlink_named_sh_is_refused_even_to_python():
    """/usr/bin/sh -> python3.11 is still a shell path and is refused."""
    t = _base()
    t.add_symlink("/usr/bin/sh", "python3.11", "planted")
    assert "/usr/bin/sh" in _violations(t)


def test_script_for_another_interpreter_is_refused():
    """An executable '#!/bin/sh' script is refused whatever its name."""
    t = _base()
    t.add_file("/usr/lib/udev/hwclock-set", "planted", data=b"#!/bin/sh\nexit 0\n", mode=0o755)
    assert _violations(t)["/usr/lib/udev/hwclock-set"] == "script for interpreter '/bin/sh'"


def test_renamed_host_shell_is_caught_by_content():
    """The host's dash copied under an innocent name is recognised by its content."""
    dash = shutil.which("dash") or "/usr/bin/dash"
    if not Path(dash).exists():
        pytest.fail("this test needs the host's dash (Debian always has it)")
    t = _base()
    t.add_file("/usr/bin/helper", "planted", src=Path(dash).resolve(), mode=0o755)
    assert "same content as the host's" in _violations(t)["/usr/bin/helper"]


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o6711])
def test_setuid_or_setgid_file_is_refused(mode):
    """Any file with the setuid or setgid bit is refused, with its mode."""
    t = _base()
    t.add_file("/usr/bin/mount", "planted", data=b"\x7fELF", mode=mode)
    assert f"{mode:04o}" in _violations(t)["/usr/bin/mount"]


def test_policy_error_lists_every_file():
    """PolicyError's message names every offending file, not just the first."""
    t = _base()
    t.add_file("/usr/bin/sh", "planted", data=b"x", mode=0o755)
    t.add_file("/usr/bin/su", "planted", data=b"x", mode=0o4755)
    message = str(policy.PolicyError(policy.check(t, t.resolve)))
    assert "/usr/bin/sh" in message and "/usr/bin/su" in message
