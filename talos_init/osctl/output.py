"""osctl's output: human tables by default, ``-o json`` / ``-o yaml`` for scripts."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml

Column = tuple[str, Callable[[dict[str, Any]], Any]]

# C0 controls but tab, DEL, and C1 (0x9b alone is a CSI to some terminals).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def for_terminal(text: str, tty: bool) -> str:
    """Text from the node (a service's or a pod's output) as it may reach a terminal: control
    characters shown as \\xNN, so no escape sequence retitles, clears or rewrites the
    operator's screen. Not a terminal (a pipe, a file): unchanged, as ``kubectl logs`` does."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if tty else text


def human_bytes(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{seconds:.1f}s" if s < 10 else f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60}s"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(cell(v) for v in value) or "-"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], out: TextIO = sys.stdout) -> None:
    headers = [h for h, _ in columns]
    cells = [[cell(fn(r)) for _, fn in columns] for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    for line in [headers, *cells]:
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n")


def structured(value: Any, fmt: str, out: TextIO = sys.stdout) -> None:
    if fmt == "json":
        out.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    else:
        out.write(yaml.safe_dump(value, sort_keys=False, default_flow_style=False))


def stream_item(value: Any, fmt: str, out: TextIO = sys.stdout) -> None:
    """One item of a stream: a JSON line, or a YAML document."""
    if fmt == "json":
        out.write(json.dumps(value, separators=(",", ":")) + "\n")
    else:
        out.write("---\n" + yaml.safe_dump(value, sort_keys=False))
    out.flush()
