"""osctl's boot-slot verbs: upgrade, rollback (and reset), and the slots in `version`.

Kept apart from ``__main__`` so each verb is one small parser function and one runner.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from talos_init.osctl import output
from talos_init.osctl.client import Client, OsctlError

VERBS = ("upgrade", "rollback", "reset")
CmdFactory = Callable[..., argparse.ArgumentParser]  # (name, help, *examples)


def add_upgrade(cmd: CmdFactory) -> None:
    s = cmd("upgrade", "write a new image (a unified kernel image, python -m initramfs.bootimg) "
                       "to the other boot slot and boot it once (admin)",
            "osctl -n 10.0.0.5 upgrade --image build/talos.efi",
            "osctl -n 10.0.0.5 upgrade --image build/talos.efi --stage")
    s.add_argument("--image", required=True,
                   help="the unified kernel image (.efi): a file, - for standard input, or an "
                        "http(s) URL that osctl fetches and uploads")
    s.add_argument("--tries", type=int, default=3,
                   help="boot attempts before the firmware goes back to the running slot")
    s.add_argument("--stage", "--no-reboot", dest="stage", action="store_true",
                   help="write the slot but do not reboot (it boots at the next reboot)")


def add_rollback(cmd: CmdFactory) -> None:
    s = cmd("rollback", "boot the other slot next, and reboot (admin)",
            "osctl -n 10.0.0.5 rollback")
    s.add_argument("--no-reboot", dest="stage", action="store_true",
                   help="only switch: the other slot boots at the next reboot")


def add_reset(cmd: CmdFactory) -> None:
    s = cmd("reset", "wipe the stored config and /var (all: the boot slots too), then power off "
                     "or reboot (admin)",
            "osctl -n 10.0.0.5 reset --wipe-mode system-disk --reboot")
    s.add_argument("--graceful", default=True, action=argparse.BooleanOptionalAction,
                   help="stop the services in order first (the default; there is no etcd "
                        "member to leave)")
    s.add_argument("--wipe-mode", choices=("all", "system-disk", "user-disks"), default="all",
                   help="all: STATE, EPHEMERAL and the boot slots (the disk then boots no more); "
                        "system-disk: STATE and EPHEMERAL; user-disks: machine.disks")
    after = s.add_mutually_exclusive_group()
    after.add_argument("--reboot", action="store_true", help="reboot afterwards")
    after.add_argument("--shutdown", action="store_true", help="power off afterwards (default)")


def add_parsers(cmd: CmdFactory) -> None:
    add_upgrade(cmd)
    add_rollback(cmd)
    add_reset(cmd)


def _chunks(args: argparse.Namespace, digest: Any) -> Iterator[bytes]:
    image = args.image
    try:
        if image.startswith(("http://", "https://")):
            src = urllib.request.urlopen(image, timeout=args.timeout)
        else:
            src = sys.stdin.buffer if image == "-" else open(image, "rb")
    except OSError as e:
        raise OsctlError(f"--image {image}: {getattr(e, 'strerror', None) or e}") from None
    with src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            yield chunk


def _digest_of(path: str) -> str | None:
    if path == "-" or path.startswith(("http://", "https://")):
        return None
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise OsctlError(f"--image {path}: {e.strerror or e}") from None
    return h.hexdigest()


def run(args: argparse.Namespace, client: Client, nodes: list[str]) -> int:
    failed = 0
    for node in nodes:
        try:
            if args.command == "upgrade":
                # A file is hashed first, so the node checks the bytes it got are the file's.
                sha = _digest_of(args.image)
                params = {"tries": args.tries, "reboot": not args.stage,
                          **({"sha256": sha} if sha else {})}
                result = client.upload(node, "upgrade", params,
                                       _chunks(args, hashlib.sha256()), reply_timeout=600)
            elif args.command == "reset":
                result = client.call(node, "reset", {
                    "graceful": args.graceful, "wipe_mode": args.wipe_mode,
                    "action": "reboot" if args.reboot else "poweroff"})
            else:
                result = client.call(node, "rollback", {"reboot": not args.stage})
            if args.output != "table":
                output.structured(result, args.output)
            elif args.command == "upgrade":
                print(f"{node}: slot {result['slot']} <- {result['entry']} (version "
                      f"{result['version']}, {result['tries']} tries, sha256 {result['sha256'][:16]}"
                      f"...); {'rebooting' if result.get('rebooting') else 'boots at the next reboot'}")
            elif args.command == "reset":
                print(f"{node}: resetting ({result['wipe_mode']}: "
                      f"{', '.join(result['wipe']) or 'nothing'} wiped after the unmount), "
                      f"then {result['action']}")
            else:
                print(f"{node}: next boot: slot {result['next']}; "
                      f"{'rebooting' if result.get('rebooting') else 'at the next reboot'}")
        except OsctlError as e:
            print(f"osctl: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def version_rows(boot: dict[str, Any] | None) -> list[dict[str, Any]]:
    """`osctl version`'s boot lines: the running slot, each slot, a rollback if any."""
    if not boot:
        return []
    rows = [{"k": "boot slot", "v": boot.get("running") or f"none ({boot.get('note', 'no slots')})"}]
    for slot, info in sorted((boot.get("slots") or {}).items()):
        rows.append({"k": f"slot {slot}", "v": f"{info.get('version') or '?'} ({info['state']}, "
                                                 f"{info['entry']})"})
    if boot.get("rolled_back"):
        rows.append({"k": "rolled back", "v": boot["rolled_back"]})
    return rows
