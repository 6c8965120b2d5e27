"""The ``apply-config`` call: validate a whole machine config and make it the node's.

On a configured node (``RunningApply``, os:admin over mTLS) the new config is compared
with the running one (``userdata.configdiff``): every change is live (with the services
to restart) or needs a reboot. Modes, as current Talos (1.14 dropped ``reboot``):
``auto``/``no-reboot`` keep it on STATE and apply it live, and refuse a change that
needs a reboot (saying so, and that ``staged`` + ``osctl reboot`` does it); ``staged``
keeps it for the next boot only; ``try`` applies it live without keeping it and reverts
after ``try_timeout`` seconds unless a later non-try apply confirms. One apply at a time
(a second one is refused, not queued). The reply leaves before anything acts: the
server calls ``after_reply`` once it has written it, and only then is config.json
replaced (networkd sees it and changes the network) and the services restarted.

In maintenance mode (no config yet) a valid config is written to /run/talos exactly as a
fetched one (``userdata.apply``): the waiting userdata service finishes and the boot goes
on; apid then restarts itself with the config's CA (``__main__``). An invalid config is
refused with every problem the validator found (file:line:column: path: message) and the
node stays in maintenance mode. ``dry_run`` validates only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from talos_init.apid.protocol import (ABORTED, BAD_REQUEST, FAILED_PRECONDITION, INVALID_CONFIG,
                                      UNAVAILABLE, ApiError)
from talos_init.log import get_logger
from talos_init.paths import Paths

log = get_logger("apid")
MODES = ("auto", "no-reboot", "staged", "try")
DEFAULT_TRY = 60.0

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



Restart = Callable[[str], Awaitable[Any]]  # services.restart through PID 1


class RunningApply:
    def __init__(self, paths: Paths, restart: Restart, *, find_state: Callable[[], Any] | None = None
                 ) -> None:
        self.paths = paths
        self.restart = restart
        self.find_state = find_state or self._mount_state
        self.lock = asyncio.Lock()
        self.closing = False  # apid is stopping (the node shuts down): apply nothing
        self._pending: tuple[Any, ...] | None = None
        self._try: asyncio.Task[None] | None = None
        self._try_base: tuple[bytes, dict[str, Any]] | None = None  # what a try reverts to
        self.acting: asyncio.Task[None] | None = None  # the last after-reply work (tests wait)

    def _mount_state(self) -> Any:
        from talos_init.disk import state
        from talos_init.userdata.configstore import Store

        where = state.ensure_mounted(self.paths.state)
        return Store(where) if where is not None else None

    async def __call__(self, params: dict[str, Any]) -> Any:
        data = config_param(params)
        mode = params.get("mode", "auto")
        if mode not in MODES:
            raise ApiError(BAD_REQUEST, f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if self.closing:
            raise ApiError(UNAVAILABLE, "the node is shutting down; nothing was applied")
        if self.lock.locked():
            raise ApiError(ABORTED, "another apply-config is in progress on this node; nothing "
                                    "was applied (try again once it has finished)")
        await self.lock.acquire()
        handed = False
        try:
            reply = await self._apply(data, mode, params)
            handed = self._pending is not None
            return reply
        finally:
            if not handed:
                self.lock.release()

    async def _apply(self, data: bytes, mode: str, params: dict[str, Any]) -> dict[str, Any]:
        from talos_init.userdata import configdiff

        source = str(params.get("source") or "config")
        dry = bool(params.get("dry_run"))
        result = await asyncio.to_thread(validate, data, source)
        old = json.loads(await asyncio.to_thread(self.paths.effective_config.read_text))
        plan = configdiff.plan(old, result.config.effective)
        reply: dict[str, Any] = {
            "mode": mode, "dry_run": dry, "warnings": [p.format(source) for p in result.warnings],
            "changes": [c.as_dict() for c in plan.changes],
            "restart": [] if mode == "staged" else list(plan.restart),
            "reboot_needed": [c.path for c in plan.reboot],
        }
        if mode != "staged" and not plan.live:
            paths = ", ".join(c.path for c in plan.reboot)
            message = (f"{paths} cannot change without a reboot; nothing was applied. Apply it "
                       "with --mode staged, then osctl reboot")
            if dry:
                reply["message"] = f"would be refused: {message}"
                return reply
            raise ApiError(FAILED_PRECONDITION, message)
        if dry:
            reply["message"] = "dry run: nothing applied"
            return reply
        if mode == "staged":
            store = await asyncio.to_thread(self.find_state)
            if store is None:
                raise ApiError(FAILED_PRECONDITION, "no STATE partition on this node: a staged "
                                                    "config would be lost; nothing was applied")
            rec = await asyncio.to_thread(store.stage, data, source)
            reply.update(version=rec["version"], message="staged: it becomes the config at the "
                         "next boot (osctl reboot); nothing changed now")
            return reply
        if mode == "try" and not plan.changes:
            reply["message"] = "no changes"
            return reply
        if mode == "try":
            timeout = params.get("try_timeout", DEFAULT_TRY)
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
                raise ApiError(BAD_REQUEST, "try_timeout must be a positive number of seconds")
            if self._try_base is None:
                base = await asyncio.to_thread(self.paths.config.read_bytes)
                self._try_base = (base, old)
            reply["message"] = (f"applied live for {timeout:g}s, then reverted unless another "
                                "apply-config (not try) confirms it; not kept on disk")
            reply["revert_in"] = timeout
        else:
            store = await asyncio.to_thread(self.find_state)
            if store is not None:
                rec = await asyncio.to_thread(self._keep, store, data, mode, source)
                reply["version"] = rec["version"]
                reply["message"] = "kept on the install disk and applied live"
            else:
                reply["message"] = ("applied live; not kept on disk (no STATE partition): the "
                                    "next boot uses talos.config= again")
            self._confirm_try(mode)  # also when it changes nothing: it confirms a try
            if not plan.changes:
                reply["message"] = "no changes to apply; " + reply["message"].split(" and ")[0]
                return reply
            timeout = None
        self._pending = (data, result.config.effective, plan, mode, timeout)
        return reply

    @staticmethod
    def _keep(store: Any, data: bytes, mode: str, source: str) -> dict[str, Any]:
        """Save unless the store holds exactly this config already (no new version)."""
        import hashlib

        current = store.load()
        if current is not None and current["sha256"] == hashlib.sha256(data).hexdigest():
            return current
        return store.save(data, mode, source)

    def _confirm_try(self, mode: str) -> None:
        if mode != "try" and self._try is not None:
            self._try.cancel()
            self._try, self._try_base = None, None
            log.info("config_try_confirmed", mode=mode)

    def after_reply(self) -> None:
        """The server wrote the reply (or the client left): now act, then free the slot."""
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        self.acting = asyncio.ensure_future(self._act_and_release(*pending))

    async def _act_and_release(self, data: bytes, effective: dict[str, Any], plan: Any,
                               mode: str, timeout: float | None) -> None:
        try:
            await self._act(data, effective, plan, mode)
            if timeout is not None:
                if self._try is not None:
                    self._try.cancel()
                self._try = asyncio.ensure_future(self._revert_after(timeout))
        finally:
            self.lock.release()

    async def _act(self, data: bytes, effective: dict[str, Any], plan: Any, mode: str) -> None:
        from talos_init.userdata import store

        def write() -> None:
            store.write_source(self.paths.config_source, "store" if mode != "try" else "try")
            store.write_config(data, effective, self.paths.config, self.paths.effective_config)
        await asyncio.to_thread(write)  # networkd sees config.json change: the network moves
        log.info("config_applied", mode=mode, changes=[c.path for c in plan.changes],
                 restart=list(plan.restart))
        for sid in plan.restart:
            try:
                await self.restart(sid)
            except Exception as e:  # noqa: BLE001 - one failed restart must not stop the rest
                log.warning("config_restart_failed", service=sid, error=str(e))

    async def _revert_after(self, timeout: float) -> None:
        from talos_init.userdata import configdiff

        await asyncio.sleep(timeout)
        async with self.lock:
            base, self._try_base = self._try_base, None
            self._try = None
            if base is None:
                return
            data, effective = base
            current = json.loads(await asyncio.to_thread(self.paths.effective_config.read_text))
            plan = configdiff.plan(current, effective)
            log.warning("config_try_reverted", after=timeout, changes=[c.path for c in plan.changes])
            await self._act(data, effective, plan, "revert")


def running_apply(args: Any, paths: Paths) -> RunningApply:
    from pathlib import Path

    from talos_init.apid.configinfo import state_store
    from talos_init.control.client import ControlClient

    control = ControlClient(args.control_socket)

    async def restart(sid: str) -> Any:
        return await control.call("services.restart", {"id": sid})
    store_dir = Path(args.config_store) if args.config_store else None
    return RunningApply(paths, restart, find_state=state_store(paths.root, store_dir))
