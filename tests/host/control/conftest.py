"""A real control server on a real Loop, run in a thread so tests can be its clients."""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from talos_init.control.server import ControlServer, Limits
from talos_init.loop import Loop


class LoopThread:
    """Runs a Loop in a thread; ``run(fn)`` executes fn inside the loop and returns its value."""

    def __init__(self) -> None:
        self.loop = Loop()
        self._stop = threading.Event()
        self._calls: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()
        self.loop.add_reader(self._wake_r, self._on_wake)
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _on_wake(self) -> None:
        os.read(self._wake_r, 4096)
        while not self._calls.empty():
            fn, reply = self._calls.get()
            try:
                reply.put((True, fn()))
            except Exception as e:  # handed back to the test thread
                reply.put((False, e))
        if self._stop.is_set():
            self.loop.stop()

    def _main(self) -> None:
        self.loop.run_forever()

    def run(self, fn: Callable[[], Any]) -> Any:
        reply: queue.Queue[Any] = queue.Queue()
        self._calls.put((fn, reply))
        os.write(self._wake_w, b"x")
        ok, value = reply.get(timeout=10)
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        self.thread.join(timeout=10)
        self.loop.remove_reader(self._wake_r)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    lt.thread.start()
    yield lt
    lt.stop()


@pytest.fixture
def make_server(loop_thread: LoopThread, tmp_path: Path) -> Iterator[Callable[..., ControlServer]]:
    made: list[ControlServer] = []

    def make(limits: Limits = Limits(), path: Path | None = None, **handlers: Any) -> ControlServer:
        server = ControlServer(loop_thread.loop, path or tmp_path / "run" / "init.sock", limits=limits)
        for name, handler in handlers.items():
            method = name.replace("__", ".")
            if getattr(handler, "is_stream", False):
                server.register_stream(method, handler)
            else:
                server.register(method, handler)
        loop_thread.run(server.start)
        made.append(server)
        return server

    yield make
    for server in made:
        loop_thread.run(server.close)


def stream_handler(fn: Callable[..., None]) -> Callable[..., None]:
    fn.is_stream = True  # type: ignore[attr-defined]
    return fn


class LineClient:
    """A blocking client that speaks the wire format by hand, as a test should."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def send(self, obj: dict[str, Any] | bytes) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\n"
        self.sock.sendall(data)

    def recv(self) -> dict[str, Any] | None:
        line = self.file.readline()
        return json.loads(line) if line else None

    def call(self, method: str, params: dict[str, Any] | None = None, rid: int = 1) -> dict[str, Any]:
        self.send({"v": 1, "id": rid, "method": method, "params": params or {}})
        reply = self.recv()
        assert reply is not None, "server closed the connection"
        return reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()
