"""``python3.11 -I -m talos_init.apid``: the node's API over mutual TLS on port 50000.

Checklist: read the effective config, sign a serving certificate with the
machine CA (or, without its key, have trustd sign one and renew it at
half-life), listen, tell PID 1 we are ready, serve until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
import tempfile
from pathlib import Path

from talos_init import log as talos_log
from talos_init import pki
from talos_init import sdnotify
from talos_init.apid import node_pki
from talos_init.apid.calls import Calls
from talos_init.apid.proxy import Forwarder
from talos_init.apid.protocol import DEFAULT_PORT
from talos_init.apid.server import ApiServer, Limits, server_context
from talos_init.apid.worker_cert import WorkerCert, trustd_targets
from talos_init.containerd.archive import Budget
from talos_init.control.client import ControlClient
from talos_init.log import get_logger
from talos_init.pki import PkiError

log = get_logger("apid")


def parse_limit(value: str) -> tuple[str, int | float]:
    """``NAME=VALUE`` for one field of ``Limits`` (docs/for-ops/apid-limits.md lists them)."""
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


def parse_listen(value: str) -> tuple[str | None, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]") or None, int(port)


async def run(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    worker: WorkerCert | None = None
    forwarder: Forwarder | None = None
    try:
        config = node_pki.load_config(config_path)
        ca_pem = node_pki.machine_ca_cert(config, str(config_path))
        if node_pki.has_ca_key(config):
            ca = node_pki.machine_ca(config, str(config_path))
            with tempfile.TemporaryDirectory(prefix="apid-", dir=args.state_dir) as tmp:
                # The files only live until the context has read them.
                crt, key = node_pki.write_serving_files(ca, node_pki.node_names(config), Path(tmp))
                ctx = server_context(crt, key, ca_pem.decode())
            # Holding the CA key, this node may forward calls to others (osctl -e THIS -n OTHER).
            forwarder = Forwarder(pki.load_cert(ca.crt_pem, "machine.ca.crt"), ca.key, ca_pem,
                                  Path(args.state_dir))
        else:
            worker = WorkerCert(config, ca_pem, Path(args.state_dir),
                                trustd_targets(config, args.trustd), console=Path(args.kmsg))
    except (PkiError, OSError, ValueError) as e:
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
    limits = Limits(**{"max_upload": args.max_upload,
                       "max_upload_uncompressed": args.max_upload_uncompressed,
                       "max_upload_ratio": args.max_upload_ratio, **dict(args.limit)})
    calls = Calls(ControlClient(args.control_socket), config=config_path, kmsg=Path(args.kmsg),
                  containerd_socket=Path(args.containerd_socket),
                  containerd_root=Path(args.containerd_root) if args.containerd_root else None,
                  budget=Budget(max_bytes=limits.max_upload_uncompressed,
                                max_ratio=limits.max_upload_ratio))
    server = ApiServer(calls, ctx, limits, forwarder=forwarder)
    host, port = parse_listen(args.listen)
    addrs = await server.start(host, port)
    where = " ".join(f"{a[0]}:{a[1]}" for a in addrs)
    log.info("apid_listening", addresses=where)
    sdnotify.try_notify(f"READY=1\nSTATUS=listening on {where}")
    await stop.wait()
    log.info("apid_stopping")
    if renewal is not None:
        renewal.cancel()
    await server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="apid", description=__doc__.splitlines()[0])
    p.add_argument("--listen", default=f":{DEFAULT_PORT}", help="[host]:port (default all addresses)")
    p.add_argument("--config", default="/run/talos/config.json", help="effective machine config")
    p.add_argument("--control-socket", default="/run/talos/init.sock")
    p.add_argument("--kmsg", default="/dev/kmsg")
    p.add_argument("--containerd-socket", default="/run/containerd/containerd.sock")
    p.add_argument("--max-upload", type=int, default=Limits.max_upload, metavar="BYTES",
                   help="largest image archive `image import` accepts, as sent")
    p.add_argument("--max-upload-uncompressed", type=int, default=Limits.max_upload_uncompressed,
                   metavar="BYTES", help="largest image archive once decompressed")
    p.add_argument("--max-upload-ratio", type=int, default=Limits.max_upload_ratio, metavar="N",
                   help="refuse an archive that decompresses to over N times its size as sent")
    p.add_argument("--limit", type=parse_limit, action="append", default=[], metavar="NAME=VALUE",
                   help="set one of apid's limits, e.g. max_connections=128 (repeatable)")
    p.add_argument("--containerd-root", default="/var/lib/containerd",
                   help="containerd's root: its free space is checked before each blob ('' to skip)")
    p.add_argument("--trustd", action="append", default=[], metavar="HOST[:PORT]",
                   help="a trustd to ask when the config has no machine.ca.key (after the "
                        "controlplane endpoint's host)")
    p.add_argument("--state-dir", default="/run/talos", help="where the serving key briefly lives")
    args = p.parse_args(argv)
    talos_log.configure()  # one line per event on stderr, which the supervisor captures
    Path(args.state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
