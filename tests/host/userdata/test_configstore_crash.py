"""The stored config survives a kill at every step of a write: a real process saving a new
config is SIGKILLed before its n-th file-system call, for every n; the store then holds the
old config or the new one, never neither, never half, and the next save works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from talos_init.userdata.configstore import Store

REPO = Path(__file__).resolve().parents[3]
OLD = b"version: v1alpha1\nmachine:\n  type: worker\n# old\n"
NEW = b"version: v1alpha1\nmachine:\n  type: worker\n# new, " + b"x" * 70000 + b"\n"

# Counts the calls that change the file system (or make a change durable) and kills the
# process with SIGKILL just before call number KILL_AT; prints the count when none is due.
SCRIPT = r"""
import os, signal, sys
from pathlib import Path
from talos_init.userdata.configstore import Store

kill_at, directory, op = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
calls = 0
def wrap(name):
    real = getattr(os, name)
    def hooked(*a, **k):
        global calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    setattr(os, name, hooked)
for name in ("open", "write", "fsync", "fchmod", "replace", "rename", "unlink", "close", "mkdir"):
    wrap(name)
st = Store(directory)
data = Path(sys.argv[4]).read_bytes()
if op == "save":
    st.save(data, "auto", "apply-config")
elif op == "stage":
    st.stage(data, "apply-config")
else:
    st.take_staged()
print(calls)
"""


def _run(kill_at: int, directory: Path, op: str, new: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", "-c", SCRIPT, str(kill_at), str(directory), op,
                           str(new)], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO)})


def _steps(tmp_path: Path, op: str, new: Path) -> int:
    probe = tmp_path / "probe"
    _prepare(probe, op)
    r = _run(0, probe, op, new)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def _prepare(directory: Path, op: str) -> None:
    st = Store(directory)
    st.save(OLD, "boot", "talos.config=")
    if op == "take":
        st.stage(NEW, "apply-config")


@pytest.mark.parametrize("op", ["save", "stage", "take"])
def test_a_kill_at_every_step_leaves_old_or_new(tmp_path, op):
    new = tmp_path / "new.yaml"
    new.write_bytes(NEW)
    steps = _steps(tmp_path, op, new)
    assert steps >= 6, steps  # open, fchmod, write, fsync, close, replace, open dir, fsync...
    seen = set()
    for n in range(1, steps + 1):
        d = tmp_path / f"cut{n}"
        _prepare(d, op)
        r = _run(n, d, op, new)
        assert r.returncode == -9, (n, r.returncode, r.stderr)
        st = Store(d)
        rec = st.load()
        assert rec is not None, f"kill before call {n}: no config at all"
        staged = st.staged()
        if op == "stage":
            assert rec["config"] == OLD  # staging never touches the current config
            assert staged is None or staged["config"] == NEW
            seen.add("new" if staged else "old")
        else:
            assert rec["config"] in (OLD, NEW), f"kill before call {n}: a config that is neither"
            seen.add("new" if rec["config"] == NEW else "old")
            assert st.history()[-1]["sha256"] == rec["sha256"]
        if op == "take":  # the next boot finishes what the cut one began: NEW is never lost
            again = st.take_staged() or st.load()
            assert again["config"] == NEW and st.staged() is None
        st.save(b"version: v1alpha1\n# after\n", "auto", "apply-config")  # stale temp files harm nothing
        assert st.load()["config"] == b"version: v1alpha1\n# after\n"
    assert seen == {"old", "new"}, seen  # the cuts fell on both sides of the switch


def test_history_keeps_the_last_configs_with_time_and_mode(tmp_path):
    st = Store(tmp_path)
    for i in range(13):
        st.save(f"version: v1alpha1\n# {i}\n".encode(), "auto" if i % 2 else "no-reboot", "apply-config")
    hist = st.history()
    assert [h["version"] for h in hist] == list(range(4, 14))
    assert [h["mode"] for h in hist][-2:] == ["auto", "no-reboot"]
    assert all(h["time"].endswith("Z") and "config" not in h for h in hist)
    assert st.load()["version"] == 13


def test_a_damaged_record_is_reported_not_trusted(tmp_path):
    from talos_init.userdata.configstore import StoreError

    st = Store(tmp_path)
    st.save(OLD, "boot", "talos.config=")
    rec = json.loads((tmp_path / "config.json").read_text())
    rec["config"] = rec["config"].replace("old", "bad")
    (tmp_path / "config.json").write_text(json.dumps(rec))
    with pytest.raises(StoreError, match=r"config.json: sha256 mismatch"):
        st.load()
    st.save(NEW, "auto", "apply-config")  # replaced, not kept
    assert st.load()["config"] == NEW and st.load()["version"] == 1


def test_staged_becomes_the_config_once_and_wipe_forgets_everything(tmp_path):
    st = Store(tmp_path)
    st.save(OLD, "boot", "talos.config=")
    st.stage(NEW, "apply-config")
    assert st.load()["config"] == OLD and st.staged()["config"] == NEW
    rec = st.take_staged()
    assert (rec["config"], rec["mode"], rec["version"]) == (NEW, "staged", 2)
    assert st.take_staged() is None and st.load()["version"] == 2
    st.wipe()
    assert st.load() is None and st.history() == [] and st.staged() is None
