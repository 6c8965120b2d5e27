"""osctl's machine-config verbs: apply-config (and the edit and patch that end in it).

The node always receives a whole config; whatever is computed (a patch, an edit) is
computed here, as talosctl does.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from talos_init.osctl import output
from talos_init.osctl.client import Client, OsctlError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")


def parse_duration(text: str) -> float:
    """Go-style durations as talosctl takes them (30s, 1m, 1m30s, 500ms) or plain seconds."""
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    parts = _DURATION.findall(t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise OsctlError(f"--timeout {text!r}: expected a duration such as 30s, 1m or 1m30s")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def read_file(name: str) -> str:
    try:
        if name == "-":
            return sys.stdin.read()
        with open(name, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise OsctlError(f"{name}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise OsctlError(f"{name}: not UTF-8 text: {e}") from None


def apply_params(args: argparse.Namespace, text: str, source: str) -> dict[str, Any]:
    params: dict[str, Any] = {"config": text, "mode": args.mode, "source": source}
    if args.dry_run:
        params["dry_run"] = True
    if args.mode == "try":
        params["try_timeout"] = parse_duration(args.try_timeout)
    return params


def send(args: argparse.Namespace, client: Client, nodes: list[str], text: str,
         source: str) -> int:
    params = apply_params(args, text, source)
    failed = 0
    for node in nodes:
        try:
            result = client.call(node, "apply-config", params)
        except OsctlError as e:
            print(f"osctl: {e}", file=sys.stderr)
            failed += 1
            continue
        if args.output != "table":
            output.structured({"node": node, "result": result} if len(nodes) > 1 else result,
                              args.output)
        else:
            print_result(node, result)
    return 1 if failed else 0


def run_apply(args: argparse.Namespace, client: Client, nodes: list[str]) -> int:
    text = read_file(args.file)
    return send(args, client, nodes, text, "stdin" if args.file == "-" else args.file)


def print_result(node: str, r: dict[str, Any]) -> None:
    for w in r.get("warnings") or []:
        print(f"{node}: warning: {w}")
    if r.get("mode") == "maintenance":
        print(f"{node}: config applied ({r.get('machine_type')}); {r.get('note', '')}".rstrip())
        return
    if r.get("dry_run") and "changes" not in r:
        print(f"{node}: the config is valid ({r.get('machine_type')}); nothing applied (dry run)")
        return
    changes = r.get("changes") or []
    head = "would change" if r.get("dry_run") else "changed"
    if not changes:
        print(f"{node}: no changes")
    for c in changes:
        how = "live" if c.get("live") else "needs a reboot"
        print(f"{node}: {head} {c['path']} ({c['op']}, {how})")
    if r.get("restart"):
        verb = "would restart" if r.get("dry_run") else "restarted"
        print(f"{node}: {verb}: {', '.join(r['restart'])}")
    if r.get("message"):
        print(f"{node}: {r['message']}")
