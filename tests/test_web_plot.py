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


def test_chart_has_a_time_axis_a_value_axis_a_legend_and_readable_labels():
    from autopyfactory.web.plot import pilots_chart

    start = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    history = [(start + i * 300, i % 7, 20 + i) for i in range(36)]  # three hours
    svg = parse(pilots_chart(history, title="Q"))
    xticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "xtick"]
    yticks = [int(t.text) for t in svg.iter(f"{SVG}text") if t.get("class") == "ytick"]
    assert xticks[:2] == ["00:00", "00:30"] and len(xticks) == 6
    assert yticks[0] == 0 and yticks[-1] >= 55 and yticks == sorted(yticks)
    assert int(svg.get("font-size")) >= 11 and all(t.get("font-size") is None for t in svg.iter(f"{SVG}text"))
    text = "".join(svg.itertext())
    assert "pending" in text and "running" in text and "time (UTC)" in text
    lines = svg.findall(f"{SVG}polyline")
    # Okabe-Ito colours, and pending dashed: the two lines differ without colour too
    assert {(p.get("stroke"), p.get("stroke-dasharray")) for p in lines} == {
        (PENDING_COLOUR, "5 3"), (RUNNING_COLOUR, None)}


def test_pilot_log_files_are_found_under_the_submission_day(tmp_path):
    from autopyfactory.web.logs import LogFiles

    day, before = "2026-01-02", "2026-01-01"
    (tmp_path / before / "Q").mkdir(parents=True)
    for name in ("77.3.out", "77.3.err", "77.log", "78.0.out"):
        (tmp_path / before / "Q" / name).write_text("x")
    (tmp_path / day / "Q").mkdir(parents=True)
    (tmp_path / day / "Q" / "9.0.out").write_text("x")
    logs = LogFiles(str(tmp_path))
    end = 1_767_312_000.0 + 600  # 2026-01-02T00:10Z: submitted the day before
    assert logs.pilot_files("Q", "77.3", end) == [
        ("77.3.out", f"/logs/{before}/Q/77.3.out"), ("77.3.err", f"/logs/{before}/Q/77.3.err"),
        ("77.log", f"/logs/{before}/Q/77.log")]
    # a Slurm array task 77_3 wrote 77.3.out
    assert [name for name, _ in logs.pilot_files("Q", "77_3", end)] == ["77.3.out", "77.3.err", "77.log"]
    assert logs.pilot_files("Q", "9.0", end) == [("9.0.out", f"/logs/{day}/Q/9.0.out")]
    assert logs.pilot_files("Q", "12.0", end) == []
    assert logs.pilot_files("../etc", "passwd", end) == []


def test_ring_keeps_nothing_while_the_store_has_the_history():
    """Memory stays flat at scale: with a usable store the plot reads the store, so no ring is kept."""
    from types import SimpleNamespace

    from autopyfactory.records import CycleRecord
    from autopyfactory.web.history import PilotHistory

    history = PilotHistory()
    record = CycleRecord(queue="Q", number=1, batch={"pending": 2, "running": 3})
    with_store = SimpleNamespace(name="Q", store=SimpleNamespace(usable=True))
    history.cycle_done(with_store, record)
    assert history.get("Q", 0) == []
    without = SimpleNamespace(name="Q", store=None)
    history.cycle_done(without, record)
    assert history.get("Q", 0) == [(record.started, 2, 3)]
