"""A tiny driver for the pure core: carries out its actions in memory."""

from __future__ import annotations

import random

from talos_init.service import core as c
from talos_init.service.definition import parse


def define(id, **fields):
    """A Definition from keyword fields, validated like a file."""
    data = {"id": id, "argv": ["/bin/true"], **fields}
    d, errors = parse(data)
    assert not errors, errors
    return d


class Sim:
    def __init__(self, definitions, **kw):
        self.core = c.Core(definitions, rng=random.Random(1), **kw)
        self.now = 0.0
        self.next_pid = 100
        self.spawned: list[str] = []
        self.signals: list[tuple[str, int]] = []
        self.timers: dict[tuple[str, str], float] = {}
        self.records: list[c.Record] = []
        self.stopped = False
        self.fail_spawn: dict[str, str] = {}

    def run(self, actions):
        for a in actions:
            if isinstance(a, c.Spawn):
                self.spawned.append(a.id)
                if a.id in self.fail_spawn:
                    self.run(self.core.on_spawn_failed(a.id, self.fail_spawn[a.id], self.now))
                else:
                    self.next_pid += 1
                    self.run(self.core.on_spawned(a.id, self.next_pid, self.now))
            elif isinstance(a, c.Signal):
                self.signals.append((a.id, a.signum))
            elif isinstance(a, c.StartTimer):
                self.timers[(a.id, a.name)] = self.now + a.delay
            elif isinstance(a, c.CancelTimer):
                self.timers.pop((a.id, a.name), None)
            elif isinstance(a, c.Record):
                self.records.append(a)
            elif isinstance(a, c.AllStopped):
                self.stopped = True
        return self

    def start(self):
        return self.run(self.core.start(self.now))

    def ready(self, sid):
        return self.run(self.core.on_ready(sid, "READY=1", self.now))

    def exit(self, sid, code=0, after=0.0):
        self.now += after
        pid = self.core.status[sid].pid
        how = f"exited with code {code}"
        return self.run(self.core.on_exited(sid, pid, how, code == 0, self.now))

    def fire(self, sid, name):
        when = self.timers.pop((sid, name))
        self.now = max(self.now, when)
        return self.run(self.core.on_timer(sid, name, self.now))

    def state(self, sid):
        return self.core.status[sid].state.value

    def seq(self, sid):
        return self.core.sequence(sid)

