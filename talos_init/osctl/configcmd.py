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


def _current(client: Client, node: str) -> str:
    return client.call(node, "config.raw")["config"]


def run_patch(args: argparse.Namespace, client: Client, nodes: list[str]) -> int:
    from talos_init.osctl import patch

    patches = []
    for value in args.patch:
        if value.startswith("@"):
            patches.append((value[1:], read_file(value[1:])))
        else:
            patches.append(("--patch", value))
    failed = 0
    for node in nodes:
        try:
            current = _current(client, node)
            try:
                patched = patch.apply(current, patches)
            except patch.PatchError as e:
                raise OsctlError(f"node {node}: the patch does not apply: {e}; nothing was "
                                 "sent") from None
        except OsctlError as e:
            print(f"osctl: {e}", file=sys.stderr)
            failed += 1
            continue
        failed += send(args, client, [node], patched, "patched config")
    return 1 if failed else 0


EDIT_HEADER = ("# Please edit the machine config below. Lines beginning with '#' at the top are\n"
               "# ignored; an empty file or one left unchanged cancels the edit.\n")


def _strip_header(text: str) -> str:
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def run_edit(args: argparse.Namespace, client: Client, nodes: list[str]) -> int:
    import os
    import shlex
    import subprocess
    import tempfile

    from talos_init.apid.protocol import INVALID_CONFIG

    if len(nodes) != 1:
        raise OsctlError("edit one node at a time (-n NODE)")
    node = nodes[0]
    original = _current(client, node)
    editor = shlex.split(os.environ.get("EDITOR") or os.environ.get("VISUAL") or "vi")
    fd, name = tempfile.mkstemp(prefix="osctl-edit-", suffix=".yaml")
    os.close(fd)
    text, header = original, EDIT_HEADER
    try:
        while True:
            with open(name, "w", encoding="utf-8") as f:
                f.write(header + text)
            if subprocess.run([*editor, name]).returncode != 0:
                raise OsctlError(f"the editor ({' '.join(editor)}) failed; nothing was applied")
            with open(name, encoding="utf-8") as f:
                edited = _strip_header(f.read())
            if not edited.strip() or edited == original:
                print(f"{node}: edit cancelled, no changes made")
                return 0
            try:
                result = client.call(node, "apply-config", apply_params(args, edited, "edited"))
            except OsctlError as e:
                if getattr(e, "code", None) != INVALID_CONFIG:
                    raise
                problems = e.detail
                text = edited
                header = EDIT_HEADER + "#\n# The node refused it:\n" + "".join(
                    f"# {line}\n" for line in problems.splitlines())
                print(f"osctl: {node} refused the edited config; reopening it", file=sys.stderr)
                continue
            if args.output != "table":
                output.structured(result, args.output)
            else:
                print_result(node, result)
            return 0
    finally:
        os.unlink(name)


def run_get(args: argparse.Namespace, client: Client, nodes: list[str]) -> int:
    failed = 0
    for node in nodes:
        try:
            h = client.call(node, "config.history")
        except OsctlError as e:
            print(f"osctl: {e}", file=sys.stderr)
            failed += 1
            continue
        if args.output != "table":
            output.structured(h if args.resource == "confighistory" else
                              {k: h.get(k) for k in ("current", "staged", "running_sha256",
                                                     "running_source", "stored")}, args.output)
            continue
        prefix = f"{node}: " if len(nodes) > 1 else ""
        if args.resource == "configversion":
            cur = h.get("current")
            if cur is None:
                print(f"{prefix}{h.get('note') or 'no stored config'}")
            else:
                kept = "running" if cur["sha256"] == h.get("running_sha256") else \
                    f"not running (running: {h.get('running_source')})"
                print(f"{prefix}version {cur['version']} ({cur['mode']} from {cur['source']} at "
                      f"{cur['time']}; {kept})")
            if h.get("staged"):
                print(f"{prefix}staged for the next boot: version {h['staged']['version']} "
                      f"at {h['staged']['time']}")
        else:
            output.table(h.get("history") or [], [
                ("VERSION", lambda r: r.get("version")), ("TIME", lambda r: r.get("time")),
                ("MODE", lambda r: r.get("mode")), ("SOURCE", lambda r: r.get("source")),
                ("SHA256", lambda r: (r.get("sha256") or "")[:16])])
    return 1 if failed else 0


RUNNERS = {"apply-config": run_apply, "patch": run_patch, "edit": run_edit, "get": run_get}
