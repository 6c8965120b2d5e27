"""Benchmark-only one-shot service: report PID 1's figures on the console, then exit.

Added to our image by benchmarks/boot_bench.py as a second cpio (never in the
product image), as the ``bench-probe`` service started once the node is up.
Prints ``BENCH ...`` lines: the boot timeline (PID 1's ``timeline`` control
call, one event per line), the kernel's initramfs unpack records, PID 1's
memory and wake-up counters after boot and after ``bench.idle=SECONDS``
(kernel command line), every process's Rss/Pss, and, with
``bench.importtime=1``, ``-X importtime`` totals of PID 1 and each daemon.
Reading /proc/1 does not wake PID 1, and this process sleeps, so the idle
window measures PID 1 alone.
"""

import json
import os
import socket
import subprocess
import sys
import time

OUT = open("/dev/console", "w", buffering=1)


def say(*words):
    OUT.write("BENCH " + " ".join(str(w) for w in words) + "\n")


def fields(path, keys):
    found = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, rest = line.partition(":")
                if k in keys:
                    found[keys[k]] = int(rest.split()[0])
    except OSError:
        pass
    return found


def pid1(label):
    # AnonHugePages: khugepaged can grow Rss while PID 1 sleeps (THP collapse, not an allocation).
    f = fields("/proc/1/smaps_rollup", {"Rss": "rss_kib", "Pss": "pss_kib",
                                         "AnonHugePages": "thp_kib"})
    f.update(fields("/proc/1/status", {"voluntary_ctxt_switches": "vctx",
                                        "nonvoluntary_ctxt_switches": "nvctx"}))
    with open("/proc/1/schedstat") as s:
        f["runs"] = int(s.read().split()[2])
    with open("/proc/uptime") as u:
        f["uptime"] = u.read().split()[0]
    say("pid1", label, *(f"{k}={v}" for k, v in f.items()))


def procs(label):
    rows = []
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as c:
                argv = c.read().split(b"\0")
            mem = fields(f"/proc/{pid}/smaps_rollup", {"Rss": "rss", "Pss": "pss"})
        except OSError:
            continue
        if not mem or pid == os.getpid():  # kernel threads have no memory; not ourselves
            continue
        rows.append({"pid": pid, "argv": " ".join(a.decode(errors="replace") for a in argv if a)[:120],
                     **mem})
    for row in rows:
        say("proc", label, json.dumps(row, separators=(",", ":")))


def control(method, params=None):
    """One call on PID 1's control socket; a stream's items are returned as a list."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect("/run/talos/init.sock")
        s.sendall(json.dumps({"v": 1, "id": 1, "method": method, "params": params or {}}).encode()
                  + b"\n")
        f = s.makefile("rb")
        items = []
        for line in f:
            reply = json.loads(line)
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            if "result" in reply:
                return reply["result"]
            if reply.get("end"):
                return items
            items.append(reply.get("item"))
        return items


def wait_settled(timeout=300.0):
    """Wait until the config is loaded and apid is ready (or failing for good); name what is not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            states = {s["id"]: s for s in control("services.list")}
        except (OSError, ValueError, RuntimeError) as e:
            say("warn", "services.list", repr(e))
            states = {}
        ok = (states.get("userdata", {}).get("state") == "finished"
              and ("apid" not in states or states["apid"].get("state") == "ready"))
        stuck = any(states.get(sid, {}).get("crashes_in_row", 0) >= 3 for sid in ("userdata", "apid"))
        if ok or stuck or time.monotonic() > deadline:
            break
        time.sleep(1)
    say("settled", "ok" if ok else "no", json.dumps({k: v.get("state") for k, v in states.items()},
                                                    separators=(",", ":")))
    if not ok:
        for sid, s in states.items():
            if s.get("state") not in ("ready", "finished", "skipped") or s.get("restarts"):
                try:
                    for item in control("logs", {"id": sid, "tail": 25}):
                        say("log", sid, item.get("line", item) if isinstance(item, dict) else item)
                except (OSError, ValueError, RuntimeError) as e:
                    say("warn", "logs", sid, repr(e))
        # A crash loop would wake PID 1 all through the idle window: stop it, and say so.
        for sid, s in states.items():
            if s.get("crashes_in_row", 0) >= 3:
                try:
                    control("services.stop", {"id": sid})
                    say("stopped", sid, "crash loop:", s.get("reason", ""))
                except (OSError, ValueError, RuntimeError) as e:
                    say("warn", "stop", sid, repr(e))


TRANSIENT = ("waiting", "starting", "running", "stopping", "backoff")


def wait_quiet(timeout=180.0):
    """Wait until no service is in a transient state: a one-shot ending mid-window wakes PID 1."""
    deadline = time.monotonic() + timeout
    busy = {}
    while time.monotonic() < deadline:
        try:
            busy = {s["id"]: s["state"] for s in control("services.list")
                    if s["id"] != "bench-probe" and s["state"] in TRANSIENT
                    and not (s["state"] == "running" and s.get("health") == "ok")}
        except (OSError, ValueError, RuntimeError) as e:
            say("warn", "services.list", repr(e))
        if not busy:
            break
        time.sleep(1)
    say("quiet", "ok" if not busy else "no", json.dumps(busy, separators=(",", ":")))


def timeline():
    try:
        events = control("timeline")
    except (OSError, ValueError, RuntimeError) as e:
        say("warn", "timeline", repr(e))
        return
    for event in events or []:
        say("event", json.dumps(event, separators=(",", ":")))


def kmsg():
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                rec = os.read(fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError:  # EPIPE: a record was overwritten; keep reading
                continue
            head, _, msg = rec.partition(";")
            msg = msg.split("\n")[0]
            if any(k in msg for k in ("Trying to unpack rootfs", "Freeing initrd memory",
                                      "Run /init as init")):
                usec = int(head.split(",")[2])
                say("kmsg", f"[{usec / 1e6:12.6f}]", msg)
    finally:
        os.close(fd)


def startup():
    """Bare interpreter start-up, as PID 1's launcher runs it (-I) and without site (-I -S)."""
    for flags in (["-I"], ["-I", "-S"]):
        walls = []
        for _ in range(3):
            t0 = time.monotonic()
            subprocess.run([sys.executable, *flags, "-c", "pass"], check=False)
            walls.append(time.monotonic() - t0)
        say("startup", "".join(flags), f"wall_s={sorted(walls)[1]:.3f}")


def importtime():
    # The modules each process runs: PID 1's, and the daemons' __main__ (guarded, so not run).
    for module in ("talos_init.init", "talos_init.networkd.__main__", "talos_init.userdata.__main__",
                   "talos_init.apid.__main__", "talos_init.devices", "talos_init.disk.__main__"):
        code = f"import {module}"
        if module == "talos_init.init":
            code = "import talos_init.service.supervisor; " + code
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-I", "-X", "importtime", "-c", code],
                              capture_output=True, text=True)
        wall = time.monotonic() - t0
        rows = []  # (cumulative us, self us, name with its nesting indent)
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cum_us, name = line[len("import time:"):].split("|", 2)
            rows.append((int(cum_us), int(self_us), name[1:]))
        total = sum(c for c, _s, n in rows if not n.startswith("  "))
        top = sorted(rows, reverse=True)[:12]
        say("importtime", module, f"rc={proc.returncode}", f"wall_s={wall:.3f}",
            f"imports_s={total / 1e6:.3f}", f"modules={len(rows)}",
            json.dumps([[n.strip(), c] for c, _s, n in top], separators=(",", ":")))


def var():
    # What the var service did (first boot: made by the config; later: found by its label).
    try:
        with open("/run/talos/var.json") as f:
            say("var", json.dumps(json.load(f), separators=(",", ":")))
    except (OSError, ValueError) as e:
        say("var", json.dumps({"error": str(e)}))
    # Its own log (timestamped lines): where its time on the path to containerd went.
    try:
        for item in control("logs", {"id": "var", "tail": 40}):
            say("varlog", item.get("line", item) if isinstance(item, dict) else item)
    except (OSError, ValueError, RuntimeError) as e:
        say("warn", "logs", "var", repr(e))


def main():
    words = dict(w.partition("=")[::2] for w in open("/proc/cmdline").read().split())
    idle = float(words.get("bench.idle", "0") or 0)
    say("probe", "start")
    wait_settled()
    wait_quiet()
    timeline()
    kmsg()
    var()
    pid1("boot")
    procs("boot")
    time.sleep(idle)
    pid1("idle")
    procs("idle")
    if words.get("bench.importtime") == "1":
        startup()
        importtime()
    say("done")


main()
