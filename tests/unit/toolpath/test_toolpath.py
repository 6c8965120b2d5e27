"""Node binaries are found even when a service runs without PATH."""

from __future__ import annotations

import os

import pytest

from talos_init.toolpath import SYSTEM_PATH, ToolMissing, ensure_path, tool


def test_sbin_tool_found_without_path(monkeypatch):
    """With PATH unset, an sbin tool (sgdisk) is still found through the system path."""
    monkeypatch.delenv("PATH", raising=False)
    assert tool("sgdisk").endswith("/sgdisk") and os.access(tool("sgdisk"), os.X_OK)


def test_missing_tool_is_named():
    """A tool that is not there is an error naming it."""
    with pytest.raises(ToolMissing, match="no-such-tool-xyz is not in this image"):
        tool("no-such-tool-xyz")


def test_ensure_path_only_fills_a_missing_path():
    """An empty environment gets the system PATH; an existing PATH is left alone."""
    env: dict[str, str] = {}
    ensure_path(env)
    assert env["PATH"] == SYSTEM_PATH
    env = {"PATH": "/opt/bin"}
    ensure_path(env)
    assert env["PATH"] == "/opt/bin"
