"""``python3.11 -I -m talos_init.trustd``: sign worker nodes' API serving certificates on :50001.

Checklist: read the effective config (machine CA with its key, machine
token), sign our own serving certificate, listen, tell PID 1 we are ready,
serve until SIGTERM. Runs on controlplane and init nodes only (the service's
skip_unless), the ones whose config holds the CA key.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import signal
import sys
import tempfile
from pathlib import Path

from talos_init import log as talos_log
from talos_init import sdnotify
from talos_init.apid import node_pki
from talos_init.log import get_logger
from talos_init.pki import PkiError
from talos_init.trustd import signer
from talos_init.trustd.server import DEFAULT_PORT, Limits, TrustServer, server_context

log = get_logger("trustd")


async def run(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    try:
        config = node_pki.load_config(config_path)
        ca = node_pki.machine_ca(config, str(config_path))
        token = (config.get("machine") or {}).get("token")
        if not isinstance(token, str) or not token:
            raise PkiError(f"{config_path}: machine.token is missing: trustd cannot tell a node "
                           "of this cluster from anyone else")
        with tempfile.TemporaryDirectory(prefix="trustd-", dir=args.state_dir) as tmp:
            crt, key = node_pki.write_serving_files(ca, node_pki.node_names(config), Path(tmp))
            ctx = server_context(crt, key)
    except (PkiError, OSError) as e:
        log.error("trustd_cannot_start", error=str(e))
        return 2
    limits = Limits(burst=args.burst, per_second=args.per_second)
    server = TrustServer(ctx, ca.crt_pem, ca.key, token,
                         datetime.timedelta(seconds=args.lifetime), limits)
    host, _, port = args.listen.rpartition(":")
    addrs = await server.start(host.strip("[]") or None, int(port))
    where = " ".join(f"{a[0]}:{a[1]}" for a in addrs)
    log.info("trustd_listening", addresses=where, lifetime=args.lifetime)
    sdnotify.try_notify(f"READY=1\nSTATUS=listening on {where}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("trustd_stopping")
    await server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="trustd", description=__doc__.splitlines()[0])
    p.add_argument("--listen", default=f":{DEFAULT_PORT}", help="[host]:port (default all addresses)")
    p.add_argument("--config", default="/run/talos/config.json", help="effective machine config")
    p.add_argument("--state-dir", default="/run/talos", help="where the serving key briefly lives")
    p.add_argument("--lifetime", type=float, default=24 * 3600.0, metavar="SECONDS",
                   help="validity of the certificates signed (default a day; at most "
                        f"{signer.MAX_LIFETIME.days} days)")
    p.add_argument("--burst", type=int, default=Limits.burst, help="requests per address at once")
    p.add_argument("--per-second", type=float, default=Limits.per_second,
                   help="requests per address per second after the burst")
    args = p.parse_args(argv)
    if not 0 < args.lifetime <= signer.MAX_LIFETIME.total_seconds():
        p.error(f"--lifetime must be in (0, {signer.MAX_LIFETIME.total_seconds():g}] seconds")
    talos_log.configure()
    Path(args.state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
