"""``python3.11 -I -m talos_init.apid``: the node's API on port 50000.

Checklist: wait for the effective config or userdata's maintenance marker. With a
config: sign a serving certificate with the machine CA, serve mutual TLS. Without one
(maintenance mode): a self-signed certificate whose fingerprint goes to the console,
only the maintenance calls, and exit once a config exists (applied through this API or
fetched after all) so that the supervisor restarts us with its CA. A config without the
CA key (a worker): have trustd sign our certificate and renew it at half-life. Tell PID 1
we are ready, serve until SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from talos_init import log as talos_log
from talos_init import sdnotify
from talos_init.apid.protocol import DEFAULT_PORT
from talos_init.log import get_logger

log = get_logger("apid")

WAIT_POLL = 0.2  # seconds between looks for config.json or the maintenance marker
LEAVE_GRACE = 1.0  # seconds between a config appearing and leaving maintenance (reply sent)


def parse_limit(value: str) -> tuple[str, int | float]:
    """``NAME=VALUE`` for one field of ``Limits`` (docs/for-ops/apid-limits.md lists them)."""
    import dataclasses

    from talos_init.apid.server import Limits

    name, sep, text = value.partition("=")
    fields = {f.name: f for f in dataclasses.fields(Limits)}
    if not sep or name not in fields:
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=VALUE, NAME one of "
                                         + ", ".join(fields))
    kind = float if fields[name].type in ("float", float) else int
    try:
        number = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a number") from None
    if number <= 0 and name != "admin_reserve" and name != "follow_admin_reserve":
        raise argparse.ArgumentTypeError(f"{name}: must be above 0")
    return name, number


def limits_of(args: argparse.Namespace) -> Any:
    """apid's Limits: the defaults, then the upload flags given, then each --limit."""
    from talos_init.apid.server import Limits

    given = {"max_upload": args.max_upload, "max_upload_uncompressed": args.max_upload_uncompressed,
             "max_upload_ratio": args.max_upload_ratio}
    values: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    values.update(args.limit)
    return Limits(**values)


def parse_listen(value: str) -> tuple[str | None, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]") or None, int(port)


def wait_for_config(config: Path, marker: Path) -> bool:
    """True once config.json exists, False once userdata says none is coming (maintenance).
    Before any heavy import: on a normal boot this waits beside the config fetch."""
    said = False
    while True:
        if config.exists():
            return True
        if marker.exists():
            return False
        if not said:
            sdnotify.try_notify("STATUS=waiting for the machine config (or maintenance mode)")
            said = True
        time.sleep(WAIT_POLL)


async def run(args: argparse.Namespace, maintenance: bool) -> int:
    import asyncio
    import signal
    import socket
    import tempfile

    from talos_init import pki
    from talos_init.apid import maintenance as mm
    from talos_init.apid import node_pki
    from talos_init.apid.calls import Calls
    from talos_init.apid.configapply import MaintenanceApply, running_apply
    from talos_init.apid.proxy import Forwarder
    from talos_init.apid.server import ApiServer, server_context
    from talos_init.apid.worker_cert import WorkerCert, trustd_targets
    from talos_init.containerd.archive import Budget
    from talos_init.control.client import ControlClient
    from talos_init.paths import Paths
    from talos_init.pki import PkiError

    config_path = Path(args.config)
    paths = Paths(Path(args.root))
    applier: Any = None
    worker: WorkerCert | None = None
    forwarder: Forwarder | None = None
    ctx = None
    fingerprint = ""
    try:
        limits = limits_of(args)
        if maintenance:
            ctx, fingerprint = mm.server_context(Path(args.state_dir), socket.gethostname())
            applier = MaintenanceApply(paths)
        else:
            config = node_pki.load_config(config_path)
            ca_pem = node_pki.machine_ca_cert(config, str(config_path))
            if node_pki.has_ca_key(config):
                ca = node_pki.machine_ca(config, str(config_path))
                with tempfile.TemporaryDirectory(prefix="apid-", dir=args.state_dir) as tmp:
                    # The files only live until the context has read them.
                    crt, key = node_pki.write_serving_files(ca, node_pki.node_names(config),
                                                            Path(tmp))
                    ctx = server_context(crt, key, ca_pem.decode())
                # Holding the CA key, this node may forward calls to others (osctl -e THIS -n OTHER).
                forwarder = Forwarder(pki.load_cert(ca.crt_pem, "machine.ca.crt"), ca.key, ca_pem,
                                      Path(args.state_dir))
            else:
                worker = WorkerCert(config, ca_pem, Path(args.state_dir),
                                    trustd_targets(config, args.trustd), console=Path(args.kmsg))
            applier = running_apply(args, paths)
    except (PkiError, OSError, ValueError, TypeError) as e:
        log.error("apid_cannot_start", error=str(e))
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    renewal: asyncio.Future[None] | None = None
    if worker is not None:
        # No CA key: trustd signs our certificate; we serve nothing until it has (or a stop).
        signed = asyncio.ensure_future(worker.context(
            lambda crt, key: server_context(crt, key, ca_pem.decode())))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({signed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not signed.done():
            signed.cancel()
            log.info("apid_stopping", reason="stopped before trustd signed")
            return 0
        stopping.cancel()
        ctx = signed.result()
        renewal = asyncio.ensure_future(worker.renew_forever(ctx))
    calls = Calls(ControlClient(args.control_socket), config=config_path, kmsg=Path(args.kmsg),
                  containerd_socket=Path(args.containerd_socket),
                  containerd_root=Path(args.containerd_root) if args.containerd_root else None,
                  budget=Budget(max_bytes=limits.max_upload_uncompressed,
                                max_ratio=limits.max_upload_ratio),
                  apply_config=applier, root=Path(args.root),
                  config_store=Path(args.config_store) if args.config_store else None)
    assert ctx is not None  # every path above made one or returned
    server = ApiServer(calls, ctx, limits, forwarder=forwarder, maintenance=maintenance)
    host, port = parse_listen(args.listen)
    addrs = await server.start(host, port)
    where = " ".join(f"{a[0]}:{a[1]}" for a in addrs)
    if maintenance:
        log.warning("apid_maintenance", addresses=where, fingerprint=fingerprint,
                    reason="no machine config", hint="osctl --insecure apply-config -f FILE")
        mm.announce(fingerprint, Path(args.kmsg), str(port))
        sdnotify.try_notify(f"READY=1\nSTATUS=maintenance mode on {where}, "
                            f"certificate fingerprint {fingerprint}")
        watcher = asyncio.ensure_future(_leave_when_configured(config_path, stop))
    else:
        log.info("apid_listening", addresses=where)
        sdnotify.try_notify(f"READY=1\nSTATUS=listening on {where}")
    await stop.wait()
    log.info("apid_stopping")
    if renewal is not None:
        renewal.cancel()
    if hasattr(applier, "closing"):
        applier.closing = True  # an apply-config now is refused: the node is going down
    await server.close()
    if maintenance:
        watcher.cancel()
        if config_path.exists():  # noqa: ASYNC240 (one stat, on the way out)
            # restart: always brings us back at once (exit 0 restarts too), now with its CA.
            log.info("apid_leaving_maintenance", effect="restarting with the config's CA")
    return 0


async def _leave_when_configured(config: Path, stop) -> None:
    import asyncio

    # Either apply-config here or userdata's fetch writes it; a poll is cheap in maintenance.
    while not config.exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(WAIT_POLL)
    await asyncio.sleep(LEAVE_GRACE)  # the apply-config reply goes out first
    stop.set()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="apid", description=__doc__.splitlines()[0])
    p.add_argument("--listen", default=f":{DEFAULT_PORT}", help="[host]:port (default all addresses)")
    p.add_argument("--config", default="/run/talos/config.json", help="effective machine config")
    p.add_argument("--root", default="/", help="node root for /run/talos and /system/state (tests)")
    p.add_argument("--config-store", default=None, metavar="DIR",
                   help="keep configs in DIR instead of the STATE partition (tests)")
    p.add_argument("--control-socket", default="/run/talos/init.sock")
    p.add_argument("--kmsg", default="/dev/kmsg")
    p.add_argument("--containerd-socket", default="/run/containerd/containerd.sock")
    # Upload limits: None keeps Limits' default (docs/for-ops/apid-limits.md).
    p.add_argument("--max-upload", type=int, default=None, metavar="BYTES",
                   help="largest image archive `image import` accepts, as sent")
    p.add_argument("--max-upload-uncompressed", type=int, default=None,
                   metavar="BYTES", help="largest image archive once decompressed")
    p.add_argument("--max-upload-ratio", type=int, default=None, metavar="N",
                   help="refuse an archive that decompresses to over N times its size as sent")
    p.add_argument("--limit", type=parse_limit, action="append", default=[], metavar="NAME=VALUE",
                   help="set one of apid's limits, e.g. max_connections=128 (repeatable)")
    p.add_argument("--containerd-root", default="/var/lib/containerd",
                   help="containerd's root: its free space is checked before each blob ('' to skip)")
    p.add_argument("--trustd", action="append", default=[], metavar="HOST[:PORT]",
                   help="a trustd to ask when the config has no machine.ca.key (after the "
                        "controlplane endpoint's host)")
    p.add_argument("--state-dir", default="/run/talos", help="where the serving key briefly lives")
    p.add_argument("--maintenance-marker", default="/run/talos/maintenance",
                   help="userdata's sign that no config is coming by itself")
    args = p.parse_args(argv)
    talos_log.configure()  # one line per event on stderr, which the supervisor captures
    Path(args.state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    configured = wait_for_config(Path(args.config), Path(args.maintenance_marker))
    import asyncio

    return asyncio.run(run(args, maintenance=not configured))


if __name__ == "__main__":
    sys.exit(main())
