"""The containers listing apid shows, read from containerd's API (``grpc`` speaks it).

Field numbers from containerd 1.6's ``api/services/{containers,tasks}/v1`` and
``api/types/task``. Blocking: apid calls it from a worker thread.
"""

from __future__ import annotations

from typing import Any

from talos_init.containerd import grpc
from talos_init.containerd.grpc import GrpcError, decode, field  # noqa: F401  (re-exported)
from talos_init.containerd.grpc import get_int as _int
from talos_init.containerd.grpc import get_str as _str

MAX_RESPONSE = grpc.MAX_MESSAGE  # kept for callers of the old module
TASK_STATUS = {0: "unknown", 1: "created", 2: "running", 3: "stopped", 4: "paused", 5: "pausing"}


class Client(grpc.Client):
    def containers(self, namespace: str) -> list[dict[str, Any]]:
        """Containers in ``namespace`` with their task's pid and status, sorted by id."""
        listed = decode(self.call("/containerd.services.containers.v1.Containers/List", b"",
                                  namespace))
        tasks = {}
        for raw in decode(self.call("/containerd.services.tasks.v1.Tasks/List", b"",
                                    namespace)).get(1, []):
            t = decode(raw)
            # Tasks/List fills the task id (= its container id), not container_id (field 1).
            tasks[_str(t, 2) or _str(t, 1)] = {"pid": _int(t, 3) or None,
                                 "status": TASK_STATUS.get(_int(t, 4), "unknown")}
        out = []
        for raw in listed.get(1, []):
            c = decode(raw)
            labels = grpc.get_map(c, 2)
            created = decode(c[8][-1]) if c.get(8) else {}
            cid = _str(c, 1)
            task = tasks.get(cid, {"pid": None, "status": "no task"})
            out.append({"namespace": namespace, "id": cid, "image": _str(c, 3),
                        "runtime": _str(decode(c[4][-1]), 1) if c.get(4) else "",
                        "created": _int(created, 1) or None,
                        "pod": labels.get("io.kubernetes.pod.name"),
                        "labels": labels, **task})
        return sorted(out, key=lambda x: x["id"])
