"""Follow streams deliver new lines as they are written, and end on the node when the client leaves."""

from __future__ import annotations

import subprocess
import sys
import time

from .conftest import ROOT


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_logs_follow_delivers_new_lines(node):
    """`osctl logs -f` prints the tail, then each new line PID 1 produces, until interrupted."""
    config = node.osctlconfig("reader", ["os:reader"])
    proc = subprocess.Popen([sys.executable, "-m", "talos_init.osctl", "--osctlconfig", str(config),
                             "logs", "containerd", "-f", "--tail", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline() == "containerd line 4\n"
        assert _wait(lambda: node.supervisor.follower_count() == 1)
        for n in range(3):
            node.supervisor.write_log("containerd", f"fresh line {n}")
            assert proc.stdout.readline() == f"fresh line {n}\n"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    # apid saw the client go and closed its control stream: PID 1 holds no follower.
    assert _wait(lambda: node.supervisor.follower_count() == 0)


def test_events_follow_in_json(node):
    """`osctl -o json events -f` prints one JSON object per event recorded after it subscribed."""
    import json
    import queue
    import threading

    config = node.osctlconfig("reader", ["os:reader"])
    proc = subprocess.Popen([sys.executable, "-m", "talos_init.osctl", "--osctlconfig", str(config),
                             "-o", "json", "events", "-f", "--tail", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    events = node.supervisor.events
    try:
        # The subscription is live once PID 1's EventLog has a subscriber.
        assert _wait(lambda: node.supervisor.loop_thread.run(lambda: len(events._subscribers)) == 1)
        node.supervisor.loop_thread.run(
            lambda: events.record("service", "kubelet", "ready", reason="probe ok"))
        event = json.loads(lines.get(timeout=30))
        assert (event["name"], event["state"], event["reason"]) == ("kubelet", "ready", "probe ok")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
