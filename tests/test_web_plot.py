"""The status page's per-queue plot and the pilot history ring it reads."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from autopyfactory.web.history import PilotHistory
from autopyfactory.web.plot import PENDING_COLOUR, RUNNING_COLOUR, pilots_svg

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))


def test_lines_for_pending_and_running_scaled_to_the_maximum():
    svg = parse(pilots_svg([(0, 0, 0), (60, 5, 2), (120, 10, 4)], width=200, height=50, title="Q"))
    lines = svg.findall(f"{SVG}polyline")
    assert [line.get("stroke") for line in lines] == [PENDING_COLOUR, RUNNING_COLOUR]
    pending = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    xs, ys = [x for x, _ in pending], [y for _, y in pending]
    assert xs == sorted(xs) and xs[0] < 5 and xs[-1] > 195
    assert ys[0] > ys[1] > ys[2]  # more pilots, higher up
    assert "max 10" in "".join(svg.itertext())


def test_unknown_status_is_a_gap_not_a_zero():
    svg = parse(pilots_svg([(0, 3, 1), (10, 4, 1), (20, None, None), (30, 4, 2), (40, 5, 2)]))
    pending_runs = [p for p in svg.findall(f"{SVG}polyline") if p.get("stroke") == PENDING_COLOUR]
    assert len(pending_runs) == 2
    assert all(len(run.get("points").split()) == 2 for run in pending_runs)


def test_no_history_and_hostile_names():
    svg = pilots_svg([], title="<script>")
    assert "no data yet" in svg and "<script>" not in svg
    single = parse(pilots_svg([(5, 1, 1)], title='Q"&'))
    assert single.findall(f"{SVG}circle")
    assert re.search(r"Q\"&", "".join(single.itertext()))


def test_ring_is_bounded_and_keeps_the_newest():
    ring = PilotHistory(points=5)
    for t in range(20):
        ring.add("Q", float(t), t, None)
    points = ring.get("Q", since=0)
    assert [p[0] for p in points] == [15.0, 16.0, 17.0, 18.0, 19.0]
    assert ring.get("Q", since=18) == [(18.0, 18, None), (19.0, 19, None)]
    assert ring.get("OTHER", since=0) == []
