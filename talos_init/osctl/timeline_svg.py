"""Draw a node's boot timeline as an SVG chart, like ``systemd-analyze plot``.

``render(events)`` is a pure function of the ``timeline`` call's result (a
list of ``{"t", "kind", "name", "state", "reason", ...}`` dicts, ``t`` in
seconds since the kernel started): one row for the kernel (0 to PID 1's
exec, from the ``kernel_handoff`` event), one per boot phase (start to
done/failed), one per service with a coloured segment per state, each
lasting until the next state change or the end of the chart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

# Colours by state; unknown states are grey so a new state never breaks the chart.
COLOURS = {
    "kernel": "#9e9e9e",
    "phase": "#5c6bc0", "done": "#5c6bc0", "start": "#5c6bc0",
    "waiting": "#e0e0e0", "starting": "#ffe082", "running": "#ffb74d", "ready": "#66bb6a",
    "stopping": "#ce93d8", "finished": "#a5d6a7", "failed": "#e53935", "backoff": "#ff7043",
    "skipped": "#bdbdbd",
}
LEGEND = ("kernel", "phase", "waiting", "starting", "running", "ready", "finished", "stopping",
          "backoff", "failed", "skipped")
OTHER = "#90a4ae"

ROW = 20  # px per row
LABEL = 170  # px for the row labels on the left
TOP = 40  # px above the first row (title, axis labels)
MIN_SECONDS = 1.0


def _esc(text: object) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _tick_step(span: float) -> float:
    """A 1/2/5 x 10^n step giving at most about 20 grid lines."""
    raw = span / 20
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


def rows(events: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[tuple[float, float | None, str, str]]]]:
    """(label, [(start, end or None for "until the end", state, reason)]) per row, in chart order."""
    kernel: list[tuple[float, float | None, str, str]] = []
    phases: dict[str, list[tuple[float, float | None, str, str]]] = {}
    services: dict[str, list[tuple[float, float | None, str, str]]] = {}
    for e in sorted((e for e in events if _num(e.get("t")) is not None), key=lambda e: e["t"]):
        t, kind, name = float(e["t"]), e.get("kind"), str(e.get("name", ""))
        state, reason = str(e.get("state", "")), str(e.get("reason", "") or "")
        if kind == "boot" and name == "kernel_handoff":
            exec_at = _num(e.get("exec_at"))
            kernel = [(0.0, exec_at if exec_at is not None else t, "kernel", "")]
        elif kind == "phase":
            segs = phases.setdefault(name, [])
            if state == "start" or not segs:
                segs.append((t, None, "phase", reason))
            else:
                start, _end, _s, _r = segs[-1]
                segs[-1] = (start, t, "failed" if state == "failed" else "phase", reason)
        elif kind == "service":
            segs = services.setdefault(name, [])
            if segs:
                start, _end, s, r = segs[-1]
                segs[-1] = (start, t, s, r)
            segs.append((t, None, state, reason))
    out: list[tuple[str, list[tuple[float, float | None, str, str]]]] = []
    if kernel:
        out.append(("kernel", kernel))
    out += [(f"phase {name}", segs) for name, segs in phases.items()]
    out += list(services.items())
    return out


def render(events: Iterable[Mapping[str, Any]], title: str = "boot timeline",
           px_per_second: float | None = None, end: float | None = None) -> str:
    """An SVG document (a string) charting ``events``; ``end`` caps open segments (default: last event)."""
    events = list(events)
    table = rows(events)
    times = [float(e["t"]) for e in events if _num(e.get("t")) is not None]
    last = max([*times, *(s[1] for _l, segs in table for s in segs if s[1] is not None), 0.0])
    horizon = max(end if end is not None else last, MIN_SECONDS)
    if px_per_second is None:
        px_per_second = max(20.0, min(200.0, 1000.0 / horizon))
    width = max(LABEL + math.ceil(horizon * px_per_second) + 20, 900)  # room for the legend
    height = TOP + ROW * max(len(table), 1) + 50
    x = lambda t: LABEL + t * px_per_second  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="10" y="16" font-size="14" font-weight="bold">{_esc(title)}</text>']
    step = _tick_step(horizon)
    grid_bottom = TOP + ROW * max(len(table), 1)
    n = 0
    while n * step <= horizon + 1e-9:
        t = n * step
        out.append(f'<line class="grid" x1="{x(t):.1f}" y1="{TOP - 4}" x2="{x(t):.1f}" '
                   f'y2="{grid_bottom}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x(t):.1f}" y="{TOP - 8}" text-anchor="middle" fill="#666666">'
                   f'{t:g}s</text>')
        n += 1
    if not table:
        out.append(f'<text x="{LABEL}" y="{TOP + 14}">no events recorded</text>')
    for i, (label, segs) in enumerate(table):
        y = TOP + i * ROW
        out.append(f'<text class="label" x="{LABEL - 6}" y="{y + 14}" text-anchor="end">'
                   f'{_esc(label)}</text>')
        for start, stop, state, reason in segs:
            stop_t = horizon if stop is None else stop
            w = max((stop_t - start) * px_per_second, 1.0)
            tip = f"{label}: {state} {start:.3f}s" + (f"-{stop:.3f}s" if stop is not None else "") + (
                f" ({reason})" if reason else "")
            out.append(f'<rect class="segment" data-state="{_esc(state)}" x="{x(start):.1f}" '
                       f'y="{y + 3}" width="{w:.1f}" height="{ROW - 6}" '
                       f'fill="{COLOURS.get(state, OTHER)}"><title>{_esc(tip)}</title></rect>')
        first = segs[0][0]
        last_seg = segs[-1]
        if label == "kernel" or label.startswith("phase "):
            done = last_seg[1] if last_seg[1] is not None else horizon
            out.append(f'<text x="{x(done) + 3:.1f}" y="{y + 14}" fill="#444444">'
                       f'{done - first:.2f}s</text>')
    ly = grid_bottom + 25
    lx = 10.0
    for state in LEGEND:
        out.append(f'<rect x="{lx:.0f}" y="{ly - 10}" width="12" height="12" fill="{COLOURS[state]}"/>')
        out.append(f'<text x="{lx + 16:.0f}" y="{ly}">{state}</text>')
        lx += 22 + 7 * len(state)
    out.append("</svg>")
    return "\n".join(out) + "\n"
