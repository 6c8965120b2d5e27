"""An idle init sleeps: with services up and nothing happening, its loop does not wake.

Counted by the loop's own counter (the ``loop`` control call), not by time.
"""

from __future__ import annotations

import json
import sys
import time

from tests.host.control.conftest import LineClient
from tests.host.pid1.conftest import InitProcess

SERVICES = {
    "sleeper": {"argv": [sys.executable, "-c",
                         "import time; print('up', flush=True); time.sleep(3600)"]},
    "notifier": {"argv": [sys.executable, "-c",
                          "import os, socket, time\n"
                          "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                          "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
                          "time.sleep(3600)"],
                 "readiness": {"notify": True}},
    "oneshot": {"argv": [sys.executable, "-c", "print('done')"], "readiness": {"exit": True},
                "restart": "never"},
}
IDLE = 5.0


def logs(client: LineClient, sid: str) -> list[str]:
    client.send({"v": 1, "id": "logs", "method": "logs", "params": {"id": sid, "tail": 10}})
    lines = []
    while "item" in (reply := client.recv() or {}):
        lines.append(reply["item"]["line"])
    assert reply.get("end"), reply
    return lines


def test_idle_init_with_running_services_does_not_wake(tmp_path):
    """Three settled services (one ready by notify, one plain, one finished one-shot): over
    5 idle seconds the loop wakes only for the control calls that read its counter."""
    root = tmp_path / "root"
    services = root / "usr/lib/talos/services"
    services.mkdir(parents=True)
    for sid, body in SERVICES.items():
        (services / f"{sid}.json").write_text(json.dumps({"id": sid, **body}))
    (root / "cmdline").write_text("talos.hostname=node-1\n")
    init = InitProcess(root, "--cmdline", str(root / "cmdline"))
    try:
        settled = {"sleeper": "ready", "notifier": "ready", "oneshot": "finished"}
        for sid, state in settled.items():
            init.wait_for(lambda e, sid=sid, state=state: e.get("event") == "service_state"
                          and e.get("service") == sid and e.get("state") == state)
        client = LineClient(root / "run/talos/init.sock")  # one connection: one wake per call
        deadline = time.monotonic() + 30
        while "up" not in logs(client, "sleeper"):  # its output has been read into the ring
            assert time.monotonic() < deadline, init.log_text()
            time.sleep(0.05)
        first = client.call("loop", rid=1)["result"]
        second = client.call("loop", rid=2)["result"]
        per_call = second["wakeups"] - first["wakeups"]
        time.sleep(IDLE)
        after = client.call("loop", rid=3)["result"]
        assert per_call == 1
        assert after["wakeups"] - second["wakeups"] == per_call, init.log_text()
        assert after["timers"] == 1  # the connection's idle timeout, nothing else
        client.close()
    finally:
        init.stop()
