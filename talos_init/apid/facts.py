"""Read-only node facts apid gathers itself: /proc parsers and psutil, no PID 1 involved.

Parsers take text so they are tested without a node; readers take paths.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import struct
import time
from pathlib import Path
from typing import Any

import psutil

from talos_init import mounts as mount_table

# -- /dev/kmsg -------------------------------------------------------------------

_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
               "uucp", "cron", "authpriv", "ftp")


def parse_kmsg(record: bytes) -> dict[str, Any] | None:
    """One /dev/kmsg record ("pri,seq,usec,flags[,...];message\\n KEY=v...") as a dict."""
    text = record.decode("utf-8", errors="replace")
    head, sep, rest = text.partition(";")
    if not sep:
        return None
    fields = head.split(",")
    try:
        pri, seq, usec = int(fields[0]), int(fields[1]), int(fields[2])
    except (ValueError, IndexError):
        return None
    message = rest.split("\n", 1)[0]
    # The kernel escapes non-printable bytes as \xNN; keep them as they are.
    facility = pri >> 3
    return {"seq": seq, "t": usec / 1e6, "level": _LEVELS[pri & 7],
            "facility": _FACILITIES[facility] if facility < len(_FACILITIES) else str(facility),
            "msg": message}


def init_exec_time(kmsg: str | os.PathLike[str]) -> float | None:
    """When the kernel exec'd /init: its "Run /init as init process" record, in seconds since boot.

    PID 1 cannot know this itself (its /proc starttime is the init thread's creation,
    before the initramfs was unpacked), so the timeline takes it from the kernel's log.
    """
    try:
        fd = os.open(kmsg, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BrokenPipeError:
                continue  # overwritten while reading: go on with the next
            except BlockingIOError:
                return None
            if not record:
                return None
            parsed = parse_kmsg(record)
            if parsed and parsed["msg"].startswith("Run ") \
                    and parsed["msg"].endswith(" as init process"):
                return parsed["t"]
    finally:
        os.close(fd)


# -- /proc/meminfo -----------------------------------------------------------------

def parse_meminfo(text: str) -> dict[str, int]:
    """Values in bytes (the file says kB)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if not parts:
            continue
        try:
            n = int(parts[0])
        except ValueError:
            continue
        out[name.strip()] = n * 1024 if len(parts) > 1 and parts[1] == "kB" else n
    return out


def memory(meminfo: Path = Path("/proc/meminfo")) -> dict[str, int]:
    return parse_meminfo(meminfo.read_text())


# -- mounts ------------------------------------------------------------------------

def parse_mountinfo(text: str) -> list[dict[str, Any]]:
    return [{"source": m.source, "target": m.target, "fstype": m.fstype,
             "options": m.options + ("," + m.super_options if m.super_options else "")}
            for m in mount_table.parse_mountinfo(text)]


def mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[dict[str, Any]]:
    out = parse_mountinfo(mountinfo.read_text())
    for m in out:
        try:
            st = os.statvfs(m["target"])
        except OSError:
            continue  # a mount we cannot stat (gone, or a dead network share) is listed without usage
        m["size"] = st.f_blocks * st.f_frsize
        m["available"] = st.f_bavail * st.f_frsize
        m["used"] = (st.f_blocks - st.f_bfree) * st.f_frsize
    return out


# -- network -----------------------------------------------------------------------

def interfaces() -> list[dict[str, Any]]:
    stats = psutil.net_if_stats()
    out = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        st = stats.get(name)
        entry: dict[str, Any] = {"name": name, "up": bool(st and st.isup),
                                 "mtu": st.mtu if st else None, "mac": None, "addresses": []}
        for a in addrs:
            if a.family == psutil.AF_LINK:
                entry["mac"] = a.address
            elif a.family in (socket.AF_INET, socket.AF_INET6):
                addr = a.address.split("%")[0]
                try:
                    prefix = ipaddress.ip_network(f"{addr}/{a.netmask}", strict=False).prefixlen \
                        if a.netmask else None
                except ValueError:
                    prefix = None
                entry["addresses"].append(f"{addr}/{prefix}" if prefix is not None else addr)
        out.append(entry)
    return out


def _hex4(h: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(h, 16)))


def parse_route(text: str) -> list[dict[str, Any]]:
    """/proc/net/route (little-endian hex) as IPv4 routes."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 11:
            continue
        mask = _hex4(f[7])
        prefix = ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen
        out.append({"family": "inet", "destination": f"{_hex4(f[1])}/{prefix}",
                    "gateway": _hex4(f[2]) if int(f[2], 16) else None, "interface": f[0],
                    "metric": int(f[6]), "flags": int(f[3], 16)})
    return out


def parse_ipv6_route(text: str) -> list[dict[str, Any]]:
    """/proc/net/ipv6_route, skipping the kernel's local and unreachable entries."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        flags = int(f[8], 16)
        if f[9] == "lo" and not flags & 0x0002:  # local/unreachable entries on lo
            continue
        dst = str(ipaddress.IPv6Address(bytes.fromhex(f[0])))
        gw = str(ipaddress.IPv6Address(bytes.fromhex(f[4])))
        out.append({"family": "inet6", "destination": f"{dst}/{int(f[1], 16)}",
                    "gateway": None if gw == "::" else gw, "interface": f[9],
                    "metric": int(f[5], 16), "flags": flags})
    return out


def routes(proc_net: Path = Path("/proc/net")) -> list[dict[str, Any]]:
    out = parse_route((proc_net / "route").read_text())
    try:
        out += parse_ipv6_route((proc_net / "ipv6_route").read_text())
    except FileNotFoundError:
        pass  # IPv6 disabled in the kernel
    return out


# -- processes ------------------------------------------------------------------------

_PS_ATTRS = ["pid", "ppid", "name", "username", "status", "cmdline", "memory_info",
             "cpu_times", "create_time", "num_threads"]


def processes(sample: float = 0.2) -> list[dict[str, Any]]:
    """Every process with cpu % over ``sample`` seconds (blocking: run it in a thread)."""
    procs = list(psutil.process_iter(_PS_ATTRS))
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(sample)
    out = []
    for p in procs:
        try:
            cpu = p.cpu_percent(None)
        except psutil.Error:
            continue  # exited while we sampled
        info = p.info
        mem, times = info.get("memory_info"), info.get("cpu_times")
        out.append({"pid": info["pid"], "ppid": info.get("ppid"), "name": info.get("name"),
                    "user": info.get("username"), "state": info.get("status"),
                    "threads": info.get("num_threads"), "cpu_percent": cpu,
                    "cpu_time": round(times.user + times.system, 2) if times else None,
                    "rss": mem.rss if mem else None, "vms": mem.vms if mem else None,
                    "started": info.get("create_time"),
                    "command": " ".join(info.get("cmdline") or []) or f"[{info.get('name')}]"})
    return out


def tree_usage(pid: int | None) -> dict[str, Any]:
    """cpu seconds and resident memory of a process and all its descendants."""
    if not pid:
        return {"pid": None, "cpu_time": None, "rss": None, "processes": 0}
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {"pid": pid, "cpu_time": None, "rss": None, "processes": 0}
    cpu, rss, n = 0.0, 0, 0
    for p in family:
        try:
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss
            n += 1
        except psutil.Error:
            continue
    return {"pid": pid, "cpu_time": round(cpu, 2), "rss": rss, "processes": n}


# -- files ---------------------------------------------------------------------------

def list_dir(path: str, *, depth: int = 1, limit: int = 10000) -> list[dict[str, Any]]:
    """Entries under ``path`` down to ``depth`` levels, at most ``limit`` entries."""
    if not os.path.isabs(path):
        raise ValueError(f"path {path!r} must be absolute")
    out: list[dict[str, Any]] = []

    def entry(full: str) -> dict[str, Any]:
        st = os.lstat(full)
        e: dict[str, Any] = {"path": full, "mode": stat.filemode(st.st_mode), "size": st.st_size,
                             "mtime": st.st_mtime, "uid": st.st_uid, "gid": st.st_gid}
        if stat.S_ISLNK(st.st_mode):
            e["link"] = os.readlink(full)
        return e

    def walk(d: str, level: int) -> None:
        with os.scandir(d) as it:
            names = sorted(it, key=lambda x: x.name)
        for de in names:
            if len(out) >= limit:
                return
            try:
                out.append(entry(de.path))
            except OSError:
                continue  # vanished between listing and stat
            if level < depth and de.is_dir(follow_symlinks=False):
                try:
                    walk(de.path, level + 1)
                except OSError:
                    continue  # unreadable subdirectory: list what we can

    if not os.path.isdir(path):
        return [entry(path)]
    walk(path, 1)
    return out
