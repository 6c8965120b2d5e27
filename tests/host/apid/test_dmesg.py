"""dmesg reads kernel log records, and with -f prints new ones as the kernel writes them."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading

from .conftest import ROOT, start_apid


def test_dmesg_reads_the_real_kernel_log(node):
    """`osctl -o json dmesg` returns parsed records from this host's /dev/kmsg."""
    r = node.osctl(node.osctlconfig("reader", ["os:reader"]), "-o", "json", "dmesg")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert records and all({"seq", "t", "level", "msg"} <= rec.keys() for rec in records)
    assert [rec["seq"] for rec in records] == sorted(rec["seq"] for rec in records)


def test_dmesg_follow_prints_new_records(node, tmp_path):
    """With -f, each record written after the call started is printed as it arrives."""
    # A FIFO stands in for /dev/kmsg: one write is one record, as the kernel hands them out.
    kmsg = tmp_path / "kmsg"
    os.mkfifo(kmsg)
    keep = os.open(kmsg, os.O_RDWR | os.O_NONBLOCK)  # a writer, so readers see "empty", not EOF
    apid_tmp = tmp_path / "second"
    apid_tmp.mkdir()
    proc, host, port = start_apid(apid_tmp, node.tmp / "config.json", tmp_path / "none.sock",
                                  "--kmsg", str(kmsg))
    config = node.osctlconfig("reader", ["os:reader"])
    osctl = subprocess.Popen([sys.executable, "-m", "talos_init.osctl", "--osctlconfig", str(config),
                              "-e", f"{host}:{port}", "dmesg", "-f"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in osctl.stdout], daemon=True).start()
    try:
        for seq, text in enumerate(["eth0: link up", "EXT4-fs (vda): mounted"], start=1):
            os.write(keep, f"6,{seq},{seq * 1_000_000},-;{text}\n".encode())
            assert lines.get(timeout=30) == f"[{seq:12.6f}] {text}\n"
    finally:
        osctl.terminate()
        osctl.communicate(timeout=30)
        proc.terminate()
        proc.wait(timeout=30)
        os.close(keep)
