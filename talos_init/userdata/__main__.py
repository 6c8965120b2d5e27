"""``python3.11 -I -m talos_init.userdata``: the one-shot ``userdata`` service.

0. A config stored on the install disk (STATE, ``configstore``; a staged one becomes
   the config first) wins: validated, written, ready, without the network or the URL.
1. Read the kernel command line (``talos.config=``, digests, deadline, hostname).
2. No ``talos.config=``: say so plainly, write the maintenance marker (apid then serves
   maintenance mode) and wait, not ready, until apply-config (``apply.py``, called by
   apid) writes a valid config; then exit 0 as after a fetch. A URL answering 404 is
   "no config" too, as in Talos: maintenance mode, while the URL is still retried.
   A STATE that shows up late (slow storage drivers) is still read while it waits.
3. Wait for the network (networkd's status.json says ready: the service does not
   depend on networkd, so a stored config needs none), then fetch (fast retries,
   within ``talos.config.deadline`` when given).
4. Validate; every error goes to stderr (captured by the supervisor) and /dev/kmsg.
5. Fetch or validation failed: wait 15-30 s (jittered) and go back to 3, so fixing
   the file on the server fixes the node without a reboot. Never exit on bad input.
6. Write /run/talos/config.yaml and config.json (atomic, 0600), READY=1, exit 0.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from talos_init import cmdline as cmdline_mod
from talos_init import log as tlog
from talos_init import sdnotify
from talos_init.log import get_logger
from talos_init.paths import Paths
from talos_init.userdata import configstore, store, validate
from talos_init.userdata.fetch import (
    IMAGE_EXTRA_CA,
    SYSTEM_CA_BUNDLE,
    Fetcher,
    FetchError,
    FetchPolicy,
)
from talos_init.userdata.model import load_effective

log = get_logger("userdata")

EXIT_OK = 0
EXIT_USAGE = 2
APPLY_POLL = 1.0  # seconds between looks for a config written by apply-config
STATE_LATE = 30  # polls that also look for a STATE partition whose disk showed up late
RETRY_INTERVAL = (15.0, 30.0)  # seconds between rounds after a failed fetch or an invalid config


class Console:
    """Lines an operator must see even if nobody reads the service's log: stderr and kmsg."""

    def __init__(self, kmsg: Path | None) -> None:
        self.kmsg = kmsg

    def say(self, line: str, level: int = 3) -> None:
        print(f"userdata: {line}", file=sys.stderr, flush=True)
        if self.kmsg is None:
            return
        try:
            with self.kmsg.open("w") as f:
                f.write(f"<{level}>userdata: {line[:900]}\n")
        except OSError:
            pass  # kmsg is best effort: stderr already has it


def run(
    paths: Paths,
    *,
    sysfs: Path,
    ca_bundle: Path | None,
    extra_ca: Path | None,
    file_root: Path = Path("/"),
    retry_interval: tuple[float, float] = RETRY_INTERVAL,
    notify: Callable[[str], bool] = sdnotify.try_notify,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    console: Console | None = None,
    wait_network: Callable[[], None] | None = None,
) -> int:
    rng = rng or random.Random()
    console = console or Console(None)
    if load_stored(paths, console, notify):
        return EXIT_OK
    cmd = cmdline_mod.read(paths.cmdline)
    for err in cmd.errors:
        if err.param.startswith("talos."):
            console.say(f"kernel command line: {err}", level=4)
            log.warning("cmdline_error", param=err.param, value=err.value, reason=err.reason)
    if cmd.config_url is None:
        msg = (
            "no machine config: the kernel command line has no talos.config=URL; "
            "waiting for one (osctl apply-config, or boot with talos.config=)"
        )
        console.say(msg, level=4)
        log.warning("config_url_missing")
        notify(f"STATUS={msg}")
        enter_maintenance(paths, "no talos.config= on the kernel command line")
        return wait_applied(paths, notify, sleep, console, look_in_store=True)
    if wait_network is not None:
        wait_network()
        if load_stored(paths, console, notify):  # a disk whose drivers were slower than us
            return EXIT_OK
    hostname = cmd.hostname or _system_hostname()
    fetcher = Fetcher(
        FetchPolicy(deadline=cmd.config_deadline),
        sysfs=sysfs,
        hostname=hostname,
        ca_bundle=ca_bundle,
        extra_ca=extra_ca,
        sleep=sleep,
        rng=rng,
        file_root=file_root,
    )
    round_ = 0
    while True:
        round_ += 1
        notify(f"STATUS=fetching the machine config (round {round_})")
        try:
            fetched = fetcher.fetch(cmd.config_url, cmd.config_sha256, cmd.config_sha512)
        except FetchError as e:
            console.say(f"cannot fetch the machine config: {e}")
            if e.status == 404:
                enter_maintenance(paths, f"the config URL answered 404: {e}")
            if _wait(f"fetch failed: {e}", retry_interval, notify, sleep, rng, console,
                     applied=paths if paths.maintenance.exists() else None):
                return EXIT_OK
            continue
        result = validate.parse(fetched.data)
        source = (
            urlsplit(fetched.url).path.rsplit("/", 1)[-1] or "config"
        )  # no query: it may hold a token
        for problem in sorted(result.errors + result.warnings):
            console.say(
                problem.format(source), level=3 if problem.severity == validate.ERROR else 4
            )
        if result.config is None:
            n = len(result.errors)
            console.say(
                f"the machine config is invalid: {n} error{'s' if n != 1 else ''} (listed above)"
            )
            log.error("config_invalid", errors=n, first=result.errors[0].format(source))
            _wait(f"config invalid ({n} errors)", retry_interval, notify, sleep, rng, console)
            continue
        store.write_source(paths.config_source, "url")
        store.write_config(
            fetched.data, result.config.effective, paths.config, paths.effective_config
        )
        paths.maintenance.unlink(missing_ok=True)
        unsupported = [p.path for p in result.unsupported]
        log.info(
            "config_ready",
            machine_type=result.config.machine.type,
            attempts=fetched.attempts,
            rounds=round_,
            unsupported=unsupported,
            path=str(paths.effective_config),
        )
        if unsupported:
            console.say(
                f"accepted, not supported here (ignored): {', '.join(unsupported)}", level=5
            )
        console.say(
            f"machine config ready ({result.config.machine.type}), written to {paths.effective_config}",
            level=6,
        )
        notify(f"READY=1\nSTATUS=machine config ready ({result.config.machine.type})")
        return EXIT_OK


def network_waiter(status: Path, notify: Callable[[str], bool],
                   poll: float = 0.1) -> Callable[[], None]:
    """Wait for networkd's status.json to say ready: the service no longer depends on
    networkd in the graph, so that a config stored on disk needs no network at all; only a
    fetch waits for it, here."""
    def wait() -> None:
        said = False
        while True:
            try:
                if json.loads(status.read_text()).get("ready"):
                    return
            except (OSError, ValueError, AttributeError):
                pass
            if not said:
                notify("STATUS=waiting for the network (networkd) to fetch the config")
                said = True
            time.sleep(poll)
    return wait


def load_stored(paths: Paths, console: Console, notify: Callable[[str], bool]) -> bool:
    """A valid config from the store, written to /run/talos like a fetched one; False when
    there is none (or it is unusable: said on the console, and talos.config= decides)."""
    from talos_init.disk import state  # light: sysfs and mount(2), no udev

    try:
        state.ensure_mounted(paths.state, sys_block=paths.at("/sys/class/block"),
                             dev=str(paths.at("/dev")))
    except (state.StateError, OSError) as e:
        console.say(f"STATE partition unusable ({e}); no stored machine config", level=4)
        return False
    st = configstore.Store(paths.state)
    try:
        rec = st.take_staged() or st.load()
    except (configstore.StoreError, OSError) as e:
        console.say(f"stored machine config unreadable: {e}; using talos.config= if given")
        return False
    if rec is None:
        return False
    result = validate.parse(rec["config"])
    if result.config is None:
        for problem in result.errors:
            console.say(problem.format(str(paths.state / configstore.CONFIG)))
        console.say("the stored machine config is invalid (listed above); using talos.config=")
        return False
    store.write_source(paths.config_source, "store")
    store.write_config(rec["config"], result.config.effective, paths.config,
                       paths.effective_config)
    what = f"version {rec['version']}, {rec['mode']} from {rec['source']} at {rec['time']}"
    console.say(f"machine config read from the install disk ({what})", level=5)
    log.info("config_ready", machine_type=result.config.machine.type, source="store",
             version=rec["version"], mode=rec["mode"])
    notify(f"READY=1\nSTATUS=machine config from the install disk ({what})")
    return True


def wait_applied(
    paths: Paths, notify: Callable[[str], bool], sleep: Callable[[float], None], console: Console,
    look_in_store: bool = False,
) -> int:
    """Wait until apply-config (``apply.apply_config``) has written a valid config.json, or
    (``look_in_store``) a STATE holding one appears within STATE_LATE polls."""
    polls = 0
    while True:
        polls += 1
        if look_in_store and polls <= STATE_LATE and load_stored(paths, console, notify):
            return EXIT_OK
        if paths.effective_config.exists():
            try:
                cfg = load_effective(paths.effective_config)
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("applied_config_unreadable", error=repr(e))  # retried at the next poll
            else:
                paths.maintenance.unlink(missing_ok=True)
                console.say(f"machine config applied through the API ({cfg.machine.type})", level=6)
                log.info("config_ready", machine_type=cfg.machine.type, source="apply-config")
                notify(f"READY=1\nSTATUS=machine config applied ({cfg.machine.type})")
                return EXIT_OK
        sleep(APPLY_POLL)


def enter_maintenance(paths: Paths, reason: str) -> None:
    """The marker apid waits for: serve maintenance mode (self-signed, apply-config)."""
    if not paths.maintenance.exists():
        store.write_atomic(paths.maintenance, (reason + "\n").encode(), mode=0o644)
        log.warning("maintenance_mode", reason=reason,
                    hint="osctl --insecure apply-config -f FILE (fingerprint on the console)")


def _applied(paths: Paths) -> bool:
    try:
        return load_effective(paths.effective_config) is not None
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _wait(
    reason: str,
    interval: tuple[float, float],
    notify: Callable[[str], bool],
    sleep: Callable[[float], None],
    rng: random.Random,
    console: Console,
    applied: Paths | None = None,
) -> bool:
    """Sleep until the next round; with ``applied`` (maintenance mode), True as soon as
    apply-config has written a config (the fetch loop then ends)."""
    delay = rng.uniform(*interval)
    console.say(
        f"retrying in {delay:.0f}s; fix the config on the server and this node picks it up", level=4
    )
    log.info("config_retry_scheduled", reason=reason, seconds=round(delay, 1))
    notify(f"STATUS={reason}; retrying in {delay:.0f}s")
    if applied is None:
        sleep(delay)
        return False
    waited = 0.0
    while waited < delay:
        if applied.effective_config.exists() and _applied(applied):
            console.say("machine config applied through the API", level=6)
            log.info("config_ready", source="apply-config")
            notify("READY=1\nSTATUS=machine config applied")
            return True
        step = min(APPLY_POLL, delay - waited)
        sleep(step)
        waited += step
    return False


def _system_hostname() -> str | None:
    name = socket.gethostname()
    return None if name in ("", "localhost", "(none)") else name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3.11 -m talos_init.userdata",
        description="Fetch, validate and write the machine config (one-shot).",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        help="node root for every host path (tests point it at a temp dir)",
    )
    parser.add_argument(
        "--retry-interval",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=RETRY_INTERVAL,
        help="seconds between rounds after a failure (default 15 30)",
    )
    parser.add_argument(
        "--wait-network",
        action="store_true",
        help="before a fetch, wait for networkd's status.json to say ready (the service)",
    )
    args = parser.parse_args(argv)
    tlog.configure()  # stderr, which the supervisor captures
    paths = Paths(args.root)
    root_is_host = args.root == Path("/")
    kmsg = paths.at("/dev/kmsg")
    return run(
        paths,
        sysfs=paths.at("/sys"),
        ca_bundle=SYSTEM_CA_BUNDLE if root_is_host else paths.at(str(SYSTEM_CA_BUNDLE)),
        extra_ca=IMAGE_EXTRA_CA if root_is_host else paths.at(str(IMAGE_EXTRA_CA)),
        file_root=args.root,
        retry_interval=(min(args.retry_interval), max(args.retry_interval)),
        console=Console(kmsg if kmsg.exists() else None),
        wait_network=network_waiter(paths.at("/run/talos/networkd/status.json"), sdnotify.try_notify)
        if args.wait_network
        else None,
    )


if __name__ == "__main__":
    sys.exit(main())
