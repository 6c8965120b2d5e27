"""The boot timeline chart: events from the ``timeline`` call drawn as SVG rows and segments."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from talos_init.osctl import timeline_svg

NS = {"s": "http://www.w3.org/2000/svg"}

EVENTS = [
    {"t": 2.5, "kind": "boot", "name": "kernel_handoff", "state": "done", "reason": "",
     "exec_at": 2.0, "python_started": 2.4},
    {"t": 2.6, "kind": "phase", "name": "mounts", "state": "start", "reason": ""},
    {"t": 2.8, "kind": "phase", "name": "mounts", "state": "done", "reason": ""},
    {"t": 3.0, "kind": "service", "name": "udevd", "state": "starting", "reason": ""},
    {"t": 3.5, "kind": "service", "name": "udevd", "state": "ready", "reason": ""},
    {"t": 3.1, "kind": "service", "name": "containerd", "state": "waiting", "reason": "udevd"},
    {"t": 3.6, "kind": "service", "name": "containerd", "state": "starting", "reason": ""},
    {"t": 5.0, "kind": "service", "name": "containerd", "state": "ready", "reason": ""},
]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def segments(root: ET.Element) -> list[ET.Element]:
    return root.findall(".//s:rect[@class='segment']", NS)


def labels(root: ET.Element) -> list[str]:
    return [t.text for t in root.findall(".//s:text[@class='label']", NS)]


def test_rows_are_kernel_then_phases_then_services_in_time_order():
    """The kernel row comes first, then each phase, then services ordered by their first event."""
    root = parse(timeline_svg.render(EVENTS))
    assert labels(root) == ["kernel", "phase mounts", "udevd", "containerd"]


def test_kernel_row_spans_from_zero_to_init_exec():
    """The kernel bar starts at x for t=0 and is as wide as exec_at seconds."""
    root = parse(timeline_svg.render(EVENTS, px_per_second=100))
    kernel = [r for r in segments(root) if r.get("data-state") == "kernel"]
    assert len(kernel) == 1
    assert float(kernel[0].get("x")) == timeline_svg.LABEL
    assert float(kernel[0].get("width")) == 200.0


def test_each_service_state_lasts_until_the_next_change():
    """containerd is waiting 3.1-3.6, starting 3.6-5.0, and ready from 5.0 to the end of the chart."""
    root = parse(timeline_svg.render(EVENTS, px_per_second=100, end=6.0))
    states = [(r.get("data-state"), float(r.get("x")), float(r.get("width")))
              for r in segments(root) if "containerd" in r.find("s:title", NS).text]
    assert [s for s, _x, _w in states] == ["waiting", "starting", "ready"]
    widths = [round(w) for _s, _x, w in states]
    assert widths == [50, 140, 100]
    assert states[2][1] == timeline_svg.LABEL + 500


def test_failed_phase_is_drawn_in_the_failure_colour():
    """A phase that ends with state=failed gets the failed colour and its reason in the tooltip."""
    events = [{"t": 1.0, "kind": "phase", "name": "services", "state": "start"},
              {"t": 1.5, "kind": "phase", "name": "services", "state": "failed", "reason": "bad graph"}]
    root = parse(timeline_svg.render(events))
    (seg,) = segments(root)
    assert seg.get("fill") == timeline_svg.COLOURS["failed"]
    assert "bad graph" in seg.find("s:title", NS).text


def test_names_are_escaped():
    """A service id or reason with markup characters still gives well-formed XML."""
    events = [{"t": 0.5, "kind": "service", "name": "a<b>&\"c", "state": "failed",
               "reason": "x < y & z"}]
    root = parse(timeline_svg.render(events))
    assert labels(root) == ['a<b>&"c']


def test_no_events_still_renders_a_chart():
    """An empty timeline is a valid SVG saying nothing was recorded."""
    root = parse(timeline_svg.render([]))
    assert segments(root) == []
    assert any(t.text == "no events recorded" for t in root.iter("{http://www.w3.org/2000/svg}text"))


def test_events_without_a_usable_time_are_ignored():
    """Events whose t is missing or not a number are skipped rather than breaking the chart."""
    events = [{"kind": "service", "name": "x", "state": "ready"},
              {"t": "soon", "kind": "service", "name": "y", "state": "ready"},
              {"t": float("nan"), "kind": "service", "name": "z", "state": "ready"},
              {"t": 1.0, "kind": "service", "name": "ok", "state": "ready"}]
    assert labels(parse(timeline_svg.render(events))) == ["ok"]


def test_unknown_states_get_a_neutral_colour():
    """A state the renderer does not know is drawn grey instead of failing."""
    root = parse(timeline_svg.render([{"t": 1.0, "kind": "service", "name": "s", "state": "dreaming"}]))
    assert segments(root)[0].get("fill") == timeline_svg.OTHER


def test_grid_steps_are_round_numbers():
    """Grid lines fall on 1/2/5 x 10^n seconds, at most about 20 of them."""
    assert timeline_svg._tick_step(10) == 0.5
    assert timeline_svg._tick_step(30) == 2
    assert timeline_svg._tick_step(100) == 5
    root = parse(timeline_svg.render(EVENTS, end=40.0))
    assert len(root.findall(".//s:line[@class='grid']", NS)) <= 21
