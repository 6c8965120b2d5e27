"""The ``apply-config`` call: validate a whole machine config and make it the node's.

In maintenance mode (no config yet) a valid config is written to /run/talos exactly as a
fetched one (``userdata.apply``): the waiting userdata service finishes and the boot goes
on; apid then restarts itself with the config's CA (``__main__``). An invalid config is
refused with every problem the validator found (file:line:column: path: message) and the
node stays in maintenance mode. ``dry_run`` validates only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from talos_init.apid.protocol import ABORTED, BAD_REQUEST, INVALID_CONFIG, ApiError
from talos_init.paths import Paths

MAX_CONFIG = 1 << 20  # bytes of config text, as the fetcher's limit


def config_param(params: dict[str, Any]) -> bytes:
    text = params.get("config")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(BAD_REQUEST, "parameter 'config' must be the machine config's text")
    data = text.encode()
    if len(data) > MAX_CONFIG:
        raise ApiError(BAD_REQUEST, f"the config is {len(data)} bytes, more than {MAX_CONFIG}")
    return data


def refuse_invalid(problems: list[str]) -> ApiError:
    n = len(problems)
    return ApiError(INVALID_CONFIG, f"the machine config is invalid ({n} error{'s' * (n != 1)}); "
                    "nothing was applied:\n" + "\n".join(problems))


def validate(data: bytes, source: str) -> Any:
    """The validator's result; ApiError listing every error when there is one."""
    from talos_init.userdata import validate as v

    result = v.parse(data, source)
    if result.config is None:
        raise refuse_invalid([p.format(source) for p in result.errors])
    return result


class MaintenanceApply:
    """apply-config while the node has no config: validate, write, let the boot go on."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.lock = asyncio.Lock()
        self.applied = asyncio.Event()

    async def __call__(self, params: dict[str, Any]) -> Any:
        data = config_param(params)
        source = str(params.get("source") or "config")
        if self.lock.locked():
            raise ApiError(ABORTED, "another apply-config is running on this node; try again")
        async with self.lock:
            if self.applied.is_set():
                raise ApiError(ABORTED, "a config was applied already; the node is leaving "
                                          "maintenance mode (use mTLS with the config's CA)")
            result = await asyncio.to_thread(validate, data, source)
            warnings = [p.format(source) for p in result.warnings]
            if params.get("dry_run"):
                return {"dry_run": True, "valid": True, "warnings": warnings,
                        "machine_type": result.config.machine.type}
            from talos_init.userdata.apply import apply_config

            applied = await asyncio.to_thread(apply_config, data, self.paths)
            if applied.config is None:  # validated above: only a race could get here
                raise refuse_invalid([p.format(source) for p in applied.errors])
            self.applied.set()
            return {"applied": True, "mode": "maintenance", "warnings": warnings,
                    "machine_type": applied.config.machine.type,
                    "note": "the boot goes on with this config; this API restarts with the "
                            "config's CA (use mTLS from now on)"}


def running_apply(args: Any, paths: Paths) -> Any:
    """apply-config on a configured node (replaced by the diff-driven apply next)."""
    from talos_init.apid.protocol import UNIMPLEMENTED

    async def call(params: dict[str, Any]) -> Any:
        raise ApiError(UNIMPLEMENTED, "apply-config on a configured node is not here yet")
    return call
