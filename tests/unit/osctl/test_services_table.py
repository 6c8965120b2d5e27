"""osctl services' HEALTH column: ok, failing with the probe's error and for how long, - for none."""

import io

from talos_init.osctl import output
from talos_init.osctl.__main__ import COLUMNS


def test_health_column_and_failing_reason():
    """A failing probe replaces the reason; a one-shot's null health shows as -."""
    rows = [
        {"id": "containerd", "state": "ready", "health": "ok", "pid": 10, "uptime": 30.0,
         "restarts": 0, "reason": "READY=1 on NOTIFY_SOCKET"},
        {"id": "web", "state": "ready", "health": "failing", "pid": 11, "uptime": 200.0,
         "restarts": 0, "reason": "probe ok: connected", "health_for": 75.0,
         "health_message": "connect 127.0.0.1:80: ECONNREFUSED"},
        {"id": "var", "state": "finished", "health": None, "pid": None, "uptime": None,
         "restarts": 0, "reason": "completed"},
    ]
    buf = io.StringIO()
    output.table(rows, COLUMNS["services"], out=buf)
    header, ok, failing, once = buf.getvalue().splitlines()
    assert header.split()[:3] == ["ID", "STATE", "HEALTH"]
    assert ok.split()[:3] == ["containerd", "ready", "ok"]
    assert failing.split()[:3] == ["web", "ready", "failing"]
    assert failing.endswith("probe failing for 75s: connect 127.0.0.1:80: ECONNREFUSED")
    assert once.split()[:4] == ["var", "finished", "-", "-"]
