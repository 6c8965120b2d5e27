"""What each API call does: read node facts here, or ask PID 1 over the control socket.

Privileged actions and service state belong to PID 1; everything apid can
read itself (/proc, /dev/kmsg, files, the config) it reads here, so a busy
PID 1 never serves a ``ps``. Blocking reads run in worker threads.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import errno
import json
import os
import platform
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import talos_init
from talos_init.apid import configinfo, containerd, crilog, disks, facts
from talos_init.apid.protocol import (BAD_REQUEST, FAILED_PRECONDITION, INTERNAL, NOT_FOUND,
                                      UNAVAILABLE, ApiError)
from talos_init.apid.redact import redact
from talos_init.apid.bootcalls import BootCalls
from talos_init.apid.upload import SyncReader, UploadBody
from talos_init.containerd import grpc, images
from talos_init.containerd.archive import Budget
from talos_init.control.client import ControlClient
from talos_init.control.protocol import ControlError
from talos_init.paths import Paths

Unary = Callable[[dict[str, Any]], Awaitable[Any]]
Streaming = Callable[[dict[str, Any]], AsyncIterator[Any]]
Upload = Callable[[dict[str, Any], UploadBody], Awaitable[Any]]
IMPORT_TIMEOUT = 600.0  # one containerd reply during an import (unpacking a big layer)

READ_LIMIT = 16 * 1024 * 1024  # bytes one `read` call may return
READ_CHUNK = 64 * 1024


def _str_param(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(BAD_REQUEST, f"parameter {name!r} must be a non-empty string")
    return value


def _int_param(params: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = params.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ApiError(BAD_REQUEST, f"parameter {name!r} must be an integer from {lo} to {hi}")
    return value


def _from_containerd(e: Exception, socket_path: str) -> ApiError:
    if isinstance(e, OSError):
        return ApiError(UNAVAILABLE, f"containerd at {socket_path} unreachable: {e.strerror or e}")
    if isinstance(e, grpc.GrpcError):
        return ApiError(UNAVAILABLE if e.status == grpc.UNAVAILABLE else INTERNAL,
                        f"containerd: {e.message}")
    return ApiError(INTERNAL, f"containerd reply not understood: {e}")  # ValueError: bad bytes


def _return_memory() -> None:
    """Hand what an import freed back to the kernel: glibc keeps freed heap for reuse, and
    apid's RSS would stay at an import's peak for as long as it runs."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


def _from_control(e: ControlError) -> ApiError:
    # PID 1's codes are a subset of ours; anything else is reported as it came.
    return ApiError(e.code, e.message)


class Calls:
    def __init__(self, control: ControlClient, *, config: Path = Path("/run/talos/config.json"),
                 kmsg: Path = Path("/dev/kmsg"), proc: Path = Path("/proc"),
                 containerd_socket: Path = Path("/run/containerd/containerd.sock"),
                 containerd_root: Path | None = Path("/var/lib/containerd"),
                 budget: Budget = Budget(),
                 apply_config: Unary | None = None, sys_block: Path = Path("/sys/block"),
                 root: Path = Path("/"), config_store: Path | None = None):
        self.control = control
        self.paths = Paths(root)
        self.find_store = configinfo.state_store(root, config_store)
        self.sys_block = sys_block
        self.containerd = containerd.Client(str(containerd_socket))
        self.images = images.Importer(grpc.Client(str(containerd_socket), timeout=IMPORT_TIMEOUT),
                                      store_path=str(containerd_root) if containerd_root else None)
        self.budget = budget
        self.config_path = config
        self.kmsg = kmsg
        self.proc = proc
        self.unary: dict[str, Unary] = {
            "version": self.version, "services": self.services,
            "service.start": self._service_action("start"),
            "service.stop": self._service_action("stop"),
            "service.restart": self._service_action("restart"),
            "timeline": self.timeline, "ps": self.ps, "containers": self.containers,
            "stats": self.stats, "memory": self.memory, "mounts": self.mounts,
            "interfaces": self.interfaces, "routes": self.routes, "reboot": self.reboot,
            "shutdown": self.shutdown, "ls": self.ls, "config": self.config,
            "image.list": self.image_list, "disks": self.disks,
            "config.raw": self.config_raw, "config.history": self.config_history,
        }
        self.boot = BootCalls()
        self.unary["rollback"] = self.rollback
        self.unary["reset"] = self.reset
        if apply_config is not None:  # configapply: maintenance or running (see __main__)
            self.unary["apply-config"] = apply_config
        self.uploads: dict[str, Upload] = {"image.import": self.image_import,
                                           "upgrade": self.upgrade}
        self.streams: dict[str, Streaming] = {
            "logs": self.logs, "events": self.events, "dmesg": self.dmesg, "read": self.read,
        }

    def after_reply(self, method: str) -> None:
        """The server has written ``method``'s reply: work that must wait for it runs now."""
        hook = getattr(self.unary.get(method), "after_reply", None)
        if hook is not None:
            hook()

    async def _pid1(self, method: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return await self.control.call(method, params)
        except ControlError as e:
            raise _from_control(e) from None

    async def _pid1_stream(self, method: str, params: dict[str, Any]) -> AsyncIterator[Any]:
        try:
            async for item in self.control.stream(method, params):
                yield item
        except ControlError as e:
            raise _from_control(e) from None

    # -- PID 1 ---------------------------------------------------------------------

    async def services(self, params: dict[str, Any]) -> Any:
        return await self._pid1("services.list")

    def _service_action(self, action: str) -> Unary:
        async def call(params: dict[str, Any]) -> Any:
            return await self._pid1(f"services.{action}", {"id": _str_param(params, "id")})
        return call

    async def timeline(self, params: dict[str, Any]) -> Any:
        events = await self._pid1("timeline")
        exec_at = await asyncio.to_thread(facts.init_exec_time, self.kmsg)
        for e in events if isinstance(events, list) else ():
            if isinstance(e, dict) and e.get("kind") == "boot" and e.get("name") == "kernel_handoff":
                e["exec_at"] = exec_at
        return events

    async def reboot(self, params: dict[str, Any]) -> Any:
        return await self._pid1("reboot")

    async def shutdown(self, params: dict[str, Any]) -> Any:
        return await self._pid1("shutdown")

    async def upgrade(self, params: dict[str, Any], body: UploadBody) -> Any:
        """Written to the other slot; then the reboot unless the client asked to stage it."""
        result = await self.boot.upgrade(params, body)
        if params.get("reboot", True):
            await self._pid1("reboot")
        result["rebooting"] = bool(params.get("reboot", True))
        return result

    async def reset(self, params: dict[str, Any]) -> Any:
        """Stop everything, erase the chosen partitions after the unmount, reboot or power off
        (PID 1's shutdown with a wipe step). graceful is accepted: there is no etcd member to
        leave; services stop in order either way."""
        from talos_init.apid.bootcalls import reset_devices

        mode = params.get("wipe_mode", "all")
        action = params.get("action", "reboot")
        if action not in ("reboot", "poweroff"):
            raise ApiError(BAD_REQUEST, "parameter 'action' must be reboot or poweroff")
        devices = await asyncio.to_thread(reset_devices, mode if isinstance(mode, str) else "")
        result = await self._pid1("reset", {"action": action, "wipe": devices})
        return {**result, "wipe_mode": mode, "graceful": bool(params.get("graceful", True))}

    async def rollback(self, params: dict[str, Any]) -> Any:
        result = await self.boot.rollback(params)
        if params.get("reboot", True):
            await self._pid1("reboot")
        result["rebooting"] = bool(params.get("reboot", True))
        return result

    async def logs(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        args = {"id": _str_param(params, "id"), "tail": _int_param(params, "tail", None, 0, 100000),
                "follow": bool(params.get("follow"))}
        if params.get("kubernetes"):
            async for item in self.cri_logs(args):
                yield item
            return
        async for item in self._pid1_stream("logs", args):
            yield item

    async def cri_logs(self, args: dict[str, Any]) -> AsyncIterator[Any]:
        """A Kubernetes container's output from the log file CRI writes (osctl logs -k)."""
        try:
            found = await asyncio.to_thread(crilog.resolve, self.containerd, args["id"])
            path = await asyncio.to_thread(crilog.log_path, self.containerd, found["id"])
            items, offset, joiner = await asyncio.to_thread(crilog.read_tail, path, args["tail"])
        except crilog.CriLogError as e:
            raise ApiError(NOT_FOUND, str(e)) from None
        except containerd.GrpcError as e:
            raise ApiError(UNAVAILABLE if e.status == 14 else INTERNAL,
                           f"containerd: {e.message}") from None
        except FileNotFoundError as e:
            raise ApiError(NOT_FOUND, f"{e.filename}: no log file (yet)") from None
        except OSError as e:
            raise ApiError(UNAVAILABLE, f"containerd or the log file: {e.strerror or e}") from None
        except ValueError as e:  # a containerd reply we cannot decode
            raise ApiError(INTERNAL, f"containerd reply not understood: {e}") from None
        for item in items:
            yield item
        if not args["follow"]:
            return
        with open(path, "rb") as f:  # noqa: ASYNC230 (a local log file) -- follows this file; a rotated log ends nothing, shows nothing
            f.seek(offset)
            buf = b""
            while True:
                chunk = await asyncio.to_thread(f.read, crilog.READ_CHUNK)
                if not chunk:
                    await asyncio.sleep(0.5)
                    continue
                buf += chunk
                *lines, buf = buf.split(b"\n")
                if len(buf) > crilog.MAX_LINE:  # no newline for a megabyte: not CRI's writer
                    lines, buf = lines + [buf], b""
                for line in lines:
                    for item in joiner.feed(line):
                        yield item

    async def events(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        args = {"tail": _int_param(params, "tail", None, 0, 100000),
                "follow": bool(params.get("follow"))}
        async for item in self._pid1_stream("events", args):
            yield item

    async def stats(self, params: dict[str, Any]) -> Any:
        """cpu and memory per service, then per container (each one's process tree)."""
        out = []
        for svc in await self._pid1("services.list"):
            pid = svc.get("pid") if isinstance(svc, dict) else None
            out.append({"kind": "service", "id": svc.get("id"), "state": svc.get("state"),
                        **await asyncio.to_thread(facts.tree_usage, pid)})
        for namespace in ("system", "k8s.io"):
            try:
                containers = await asyncio.to_thread(self.containerd.containers, namespace)
            except (OSError, containerd.GrpcError, ValueError):
                break  # containerd down or not started yet: services are still worth showing
            for c in containers:
                out.append({"kind": "container", "id": f"{namespace}/{c['id']}", "state": c["status"],
                            **await asyncio.to_thread(facts.tree_usage, c["pid"])})
        return out

    # -- read here -----------------------------------------------------------------

    async def version(self, params: dict[str, Any]) -> Any:
        u = os.uname()
        return {"name": "talos-init", "version": talos_init.__version__, "api": 1,
                "python": platform.python_version(), "kernel": u.release, "arch": u.machine,
                "hostname": u.nodename, "boot": await self.boot.status()}

    async def config_raw(self, params: dict[str, Any]) -> Any:
        return await asyncio.to_thread(configinfo.raw, self.paths)

    async def config_history(self, params: dict[str, Any]) -> Any:
        return await asyncio.to_thread(configinfo.history, self.paths, self.find_store)

    async def disks(self, params: dict[str, Any]) -> Any:
        return await asyncio.to_thread(disks.list_disks, self.sys_block)

    async def ps(self, params: dict[str, Any]) -> Any:
        return await asyncio.to_thread(facts.processes)

    async def memory(self, params: dict[str, Any]) -> Any:
        return await asyncio.to_thread(facts.memory, self.proc / "meminfo")

    async def mounts(self, params: dict[str, Any]) -> Any:
        return await asyncio.to_thread(facts.mounts, self.proc / "self" / "mountinfo")

    async def interfaces(self, params: dict[str, Any]) -> Any:
        return await asyncio.to_thread(facts.interfaces)

    async def routes(self, params: dict[str, Any]) -> Any:
        return await asyncio.to_thread(facts.routes, self.proc / "net")

    async def containers(self, params: dict[str, Any]) -> Any:
        namespace = params.get("namespace", "system")
        if not isinstance(namespace, str) or not namespace:
            raise ApiError(BAD_REQUEST, "parameter 'namespace' must be a non-empty string")
        try:
            return await asyncio.to_thread(self.containerd.containers, namespace)
        except (OSError, grpc.GrpcError, ValueError) as e:
            raise _from_containerd(e, self.containerd.socket_path) from None

    async def image_list(self, params: dict[str, Any]) -> Any:
        try:
            return await asyncio.to_thread(self.images.list)
        except (OSError, grpc.GrpcError, ValueError) as e:
            raise _from_containerd(e, self.containerd.socket_path) from None

    async def image_import(self, params: dict[str, Any], body: UploadBody) -> Any:
        """The archive streams from the client through the importer; nothing is spooled."""
        reader = SyncReader(body, asyncio.get_running_loop())
        started = time.monotonic()
        try:
            imported = await asyncio.to_thread(self.images.import_archive, reader, self.budget)
        except images.ImageError as e:
            code = BAD_REQUEST if e.bad_input else FAILED_PRECONDITION if e.no_space else INTERNAL
            raise ApiError(code, str(e)) from None
        except (OSError, grpc.GrpcError, ValueError) as e:
            raise _from_containerd(e, self.containerd.socket_path) from None
        finally:
            _return_memory()
        return {"images": imported, "bytes": body.total,
                "seconds": round(time.monotonic() - started, 3)}

    async def config(self, params: dict[str, Any]) -> Any:
        try:
            text = await asyncio.to_thread(self.config_path.read_text)
        except FileNotFoundError:
            raise ApiError(FAILED_PRECONDITION, f"no machine config yet ({self.config_path})") from None
        return redact(json.loads(text))

    async def ls(self, params: dict[str, Any]) -> Any:
        path = _str_param(params, "path")
        depth = _int_param(params, "depth", 1, 1, 32)
        try:
            return await asyncio.to_thread(facts.list_dir, path, depth=depth or 1)
        except ValueError as e:
            raise ApiError(BAD_REQUEST, str(e)) from None
        except FileNotFoundError:
            raise ApiError(NOT_FOUND, f"{path}: no such file or directory") from None
        except OSError as e:
            raise ApiError(FAILED_PRECONDITION, f"{path}: {os.strerror(e.errno or errno.EIO)}") from None

    async def read(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        """Chunks of base64 data; the last item says whether the file was cut at the limit."""
        path = _str_param(params, "path")
        if not os.path.isabs(path):
            raise ApiError(BAD_REQUEST, f"path {path!r} must be absolute")
        try:
            # The type first, without opening: opening a device node can act (a watchdog
            # arms, a tape rewinds), and a FIFO would wake its writer.
            before = os.stat(path)
            if not stat.S_ISREG(before.st_mode):
                raise ApiError(FAILED_PRECONDITION, f"{path}: not a regular file")
            # O_NONBLOCK: if the path was swapped for a FIFO meanwhile, do not hang on it.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except FileNotFoundError:
            raise ApiError(NOT_FOUND, f"{path}: no such file") from None
        except OSError as e:
            raise ApiError(FAILED_PRECONDITION, f"{path}: {os.strerror(e.errno or errno.EIO)}") from None
        try:
            after = os.fstat(fd)
            if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) \
                    or not stat.S_ISREG(after.st_mode):
                raise ApiError(FAILED_PRECONDITION, f"{path}: changed while being opened; try again")
            total = 0
            while total < READ_LIMIT:
                chunk = await asyncio.to_thread(os.read, fd, min(READ_CHUNK, READ_LIMIT - total))
                if not chunk:
                    yield {"size": total, "truncated": False}
                    return
                total += len(chunk)
                yield {"data": base64.b64encode(chunk).decode()}
            more = await asyncio.to_thread(os.read, fd, 1)
            yield {"size": total, "truncated": bool(more)}
        finally:
            os.close(fd)

    async def dmesg(self, params: dict[str, Any]) -> AsyncIterator[Any]:
        """Kernel log records; with follow, new records as the kernel writes them."""
        follow = bool(params.get("follow"))
        try:
            fd = os.open(self.kmsg, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise ApiError(UNAVAILABLE, f"{self.kmsg}: {os.strerror(e.errno or errno.EIO)}") from None
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        watching = False
        try:
            while True:
                try:
                    record = os.read(fd, 8192)
                except BlockingIOError:
                    if not follow:
                        return
                    if not watching:
                        loop.add_reader(fd, ready.set)
                        watching = True
                    ready.clear()
                    await ready.wait()
                    continue
                except BrokenPipeError:
                    continue  # records were overwritten while we read: go on with the next
                if not record:
                    return
                parsed = facts.parse_kmsg(record)
                if parsed is not None:
                    yield parsed
        finally:
            if watching:
                loop.remove_reader(fd)
            os.close(fd)
