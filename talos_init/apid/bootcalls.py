"""apid's boot-slot calls: upgrade (an uploaded UKI), rollback, and the slots for `version`.

The work is ``talos_init.boot.node``'s (mount the ESP, run a slots plan, unmount), done in
a worker thread under one lock: one ESP writer per apid at a time. The upload is spooled
to /var (EPHEMERAL, not RAM), hashed as it arrives, capped, and removed afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any

from talos_init.apid.protocol import BAD_REQUEST, FAILED_PRECONDITION, TOO_LARGE, ApiError
from talos_init.apid.upload import UploadBody
from talos_init.boot import node, slots

SPOOL = Path("/var/lib/talos-init/upgrade")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class BootCalls:
    def __init__(self, spool: Path = SPOOL, max_image: int = node.MAX_IMAGE):
        self.spool = spool
        self.max_image = max_image
        self._lock = asyncio.Lock()

    async def status(self) -> dict[str, Any]:
        async with self._lock:
            try:
                return await asyncio.to_thread(node.status)
            except (node.BootError, OSError) as e:
                return {"running": None, "slots": {}, "rolled_back": None, "note": str(e)}

    async def upgrade(self, params: dict[str, Any], body: UploadBody) -> dict[str, Any]:
        tries = params.get("tries", slots.DEFAULT_TRIES)
        if not isinstance(tries, int) or isinstance(tries, bool) or not 1 <= tries <= slots.MAX_TRIES:
            raise ApiError(BAD_REQUEST, f"parameter 'tries' must be an integer from 1 to "
                                        f"{slots.MAX_TRIES}")
        want = params.get("sha256")
        if want is not None and (not isinstance(want, str) or not _HEX64.match(want)):
            raise ApiError(BAD_REQUEST, "parameter 'sha256' must be 64 hex digits")
        started = time.monotonic()
        await asyncio.to_thread(self.spool.mkdir, parents=True, exist_ok=True)
        path = self.spool / f"upload-{os.getpid()}.efi"
        h = hashlib.sha256()
        try:
            with open(path, "wb") as f:  # noqa: ASYNC230 (a local file, one frame per write)
                while chunk := await body.read_frame():
                    if body.total > self.max_image:
                        raise ApiError(TOO_LARGE, f"upgrade image larger than {self.max_image} "
                                                  "bytes")
                    h.update(chunk)
                    await asyncio.to_thread(f.write, chunk)
            if want is not None and h.hexdigest() != want.lower():
                raise ApiError(BAD_REQUEST, f"the image's sha256 is {h.hexdigest()}, not {want}")
            async with self._lock:
                try:
                    result = await asyncio.to_thread(node.upgrade, path, tries)
                except node.BootError as e:
                    raise ApiError(FAILED_PRECONDITION, str(e)) from None
        finally:
            path.unlink(missing_ok=True)
        return {**result, "sha256": h.hexdigest(), "bytes": body.total,
                "seconds": round(time.monotonic() - started, 3)}

    async def rollback(self, params: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            try:
                return await asyncio.to_thread(node.rollback)
            except node.BootError as e:
                raise ApiError(FAILED_PRECONDITION, str(e)) from None


WIPE_MODES = {
    # Talos' names. system-disk: the stored config (STATE) and /var (EPHEMERAL), boot slots
    # kept; all: the boot slots (EFI) too, the disk no longer boots; user-disks: machine.disks.
    "system-disk": ("STATE", "EPHEMERAL"),
    "all": ("STATE", "EPHEMERAL", "EFI"),
}


def reset_devices(mode: str, parts: list[node.Part] | None = None) -> list[str]:
    """The partitions a reset erases: by name, on the disk holding EPHEMERAL."""
    if mode == "user-disks":
        raise ApiError(FAILED_PRECONDITION, "wipe mode user-disks: this node acts on no "
                                            "machine.disks, so there are no user disks to wipe")
    if mode not in WIPE_MODES:
        raise ApiError(BAD_REQUEST, f"wipe mode {mode!r}: one of all, system-disk, user-disks")
    parts = node.partitions() if parts is None else parts
    system = {p.disk for p in parts if p.name == "EPHEMERAL"}
    if len(system) != 1:
        raise ApiError(FAILED_PRECONDITION, "no single install disk (a partition named EPHEMERAL) "
                                            f"found: {sorted(system) or 'none'}; /var is tmpfs?")
    disk = system.pop()
    return [p.node for p in parts if p.disk == disk and p.name in WIPE_MODES[mode]]
