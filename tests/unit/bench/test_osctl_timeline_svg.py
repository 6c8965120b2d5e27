"""``osctl timeline --svg FILE`` writes the chart of the timeline call's result."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from talos_init.osctl.__main__ import build_parser, show

EVENTS = [{"t": 1.0, "kind": "service", "name": "containerd", "state": "starting", "reason": ""},
          {"t": 2.0, "kind": "service", "name": "containerd", "state": "ready", "reason": ""}]


def test_svg_flag_writes_the_chart_instead_of_a_table(tmp_path, capsys):
    """With --svg the events go to FILE as an SVG document and only the file name is printed."""
    out = tmp_path / "boot.svg"
    args = build_parser().parse_args(["-n", "10.0.2.15", "timeline", "--svg", str(out)])
    show(args, "10.0.2.15", EVENTS, many=False)
    root = ET.fromstring(out.read_text())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "boot timeline: 10.0.2.15" in out.read_text()
    assert capsys.readouterr().out.strip() == f"10.0.2.15: timeline chart written to {out}"


def test_svg_flag_with_several_nodes_writes_one_file_each(tmp_path):
    """With several nodes each chart gets the node's name in its file name."""
    out = tmp_path / "boot.svg"
    args = build_parser().parse_args(["timeline", "--svg", str(out)])
    for node in ("a", "b"):
        show(args, node, EVENTS, many=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boot-a.svg", "boot-b.svg"]


def test_without_svg_the_timeline_is_a_table(monkeypatch):
    """Without --svg the timeline goes to the table printer, as before."""
    from talos_init.osctl import output

    tables = []
    monkeypatch.setattr(output, "table", lambda rows, columns, out=None: tables.append(rows))
    args = build_parser().parse_args(["timeline"])
    show(args, "n", EVENTS, many=False)
    assert tables == [EVENTS]
