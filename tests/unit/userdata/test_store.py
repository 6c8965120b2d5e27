"""Writing the config: atomic, 0600 whatever the umask, and readable back into the typed form."""

from __future__ import annotations

import json
import os
import stat

from talos_init.userdata import store, validate
from talos_init.userdata.model import load_effective


def test_write_config_is_root_only_and_complete(tmp_path, fixture_text):
    """Both files are 0600 under a permissive umask, no temporary file remains, JSON loads typed."""
    text = fixture_text("multidoc.yaml").encode()
    result = validate.parse(text)
    run = tmp_path / "run/talos"
    old = os.umask(0)
    try:
        store.write_config(text, result.config.effective, run / "config.yaml", run / "config.json")
    finally:
        os.umask(old)
    assert sorted(os.listdir(run)) == ["config.json", "config.yaml"]
    for name in ("config.yaml", "config.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert (run / "config.yaml").read_bytes() == text
    loaded = load_effective(run / "config.json")
    assert loaded.machine.network.hostname == "worker-7"
    assert loaded.effective == json.loads(json.dumps(result.config.effective))


def test_rewrite_replaces_atomically(tmp_path):
    """A second write replaces the file (new inode, via rename) and keeps the mode."""
    target = tmp_path / "f"
    store.write_atomic(target, b"one")
    first = target.stat().st_ino
    store.write_atomic(target, b"two")
    assert target.read_bytes() == b"two" and target.stat().st_ino != first
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
