"""A queue's pilots over time as inline SVG (no JavaScript, no CDN).

Two drawings of the same series, ``(time, pending, running)`` oldest first:
``pilots_svg``, a small line per queue for the status page, and
``pilots_chart``, the queue page's plot with a time axis, a value axis and a
legend. Colours are from the Okabe-Ito palette (told apart with the common
colour-vision deficiencies), and running is solid while pending is dashed, so
the lines differ without colour too. Every label is at least 11 px.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from autopyfactory.timefmt import duration, utc

PENDING_COLOUR = "#E69F00"  # Okabe-Ito orange
RUNNING_COLOUR = "#0072B2"  # Okabe-Ito blue
PENDING_DASH = "5 3"
LABEL_PX = 12
AXIS_COLOUR = "#374151"
SERIES = ((1, "pending", PENDING_COLOUR, PENDING_DASH), (2, "running", RUNNING_COLOUR, ""))

Point = tuple[float, "int | None", "int | None"]


def _segments(points: Sequence[tuple[float, int | None]]) -> list[list[tuple[float, int]]]:
    """Runs of known values; an unknown value (None) breaks the line."""
    runs: list[list[tuple[float, int]]] = []
    current: list[tuple[float, int]] = []
    for when, value in points:
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((when, value))
    if current:
        runs.append(current)
    return runs


Series = tuple[str, str, str, Sequence["int | None"]]  # (name, colour, dash pattern, values)


def _pilot_series(history: Sequence[Point]) -> tuple[list[float], list[Series]]:
    """Times and the pending and running series of ``history``."""
    return [p[0] for p in history], [(name, colour, dash, [p[index] for p in history])
                                     for index, name, colour, dash in SERIES]


def _lines(times: Sequence[float], series: Sequence[Series], x, y) -> list[str]:
    """Polylines (a dot for a lone point) of each series, in plot coordinates."""
    parts = []
    for _, colour, dash, values in series:
        for run in _segments(list(zip(times, values, strict=True))):
            if len(run) == 1:
                parts.append(f'<circle cx="{x(run[0][0]):.1f}" cy="{y(run[0][1]):.1f}" r="2.2" fill="{colour}"/>')
                continue
            coords = " ".join(f"{x(when):.1f},{y(value):.1f}" for when, value in run)
            dashing = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dashing} points="{coords}"/>')
    return parts


def _top(series: Sequence[Series]) -> int:
    return max([v for *_, values in series for v in values if v is not None] or [0])


def _empty(width: int, height: int, title: str, css: str) -> Markup:
    return Markup(
        f'<svg class="{css}" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}: no cycles yet</title>'
        f'<text x="{width / 2:.0f}" y="{height / 2 + 4:.0f}" text-anchor="middle" font-size="{LABEL_PX}" '
        f'fill="#6b7280">no data yet</text></svg>'
    )


def pilots_svg(history: Sequence[Point], width: int = 150, height: int = 40, title: str = "") -> Markup:
    """The status page's small plot: pending and running over the span of ``history``, and its maximum."""
    if not history:
        return _empty(width, height, title, "plot")
    pad_top, pad_bottom, pad_side = 14, 3, 3
    start, end = history[0][0], history[-1][0]
    span = max(end - start, 1.0)
    times, series = _pilot_series(history)
    top = _top(series)
    scale = max(top, 1)

    def x(when: float) -> float:
        return pad_side + (when - start) / span * (width - 2 * pad_side) if len(history) > 1 else width / 2

    def y(value: int) -> float:
        return height - pad_bottom - value / scale * (height - pad_top - pad_bottom)

    return Markup("".join([
        f'<svg class="plot" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}: pending (dashed) and running (solid) pilots, {_span(span)} up to "
        f"{(utc(end, '%H:%M') or '?')} UTC, max {top}</title>",
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#fafafa" stroke="#e5e7eb"/>',
        f'<text x="{width - 3}" y="11" text-anchor="end" font-size="11" fill="{AXIS_COLOUR}">max {top}</text>',
        f'<text x="3" y="11" font-size="11" fill="{AXIS_COLOUR}">{escape(_span(span))}</text>',
        *_lines(times, series, x, y),
        "</svg>",
    ]))


def nice_step(top: float, ticks: int = 4) -> int:
    """A step of 1, 2 or 5 × 10^k so that about ``ticks`` steps reach ``top``."""
    raw = max(top / ticks, 1.0)
    magnitude = 10 ** (len(str(int(raw))) - 1)
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def time_step(span: float) -> int:
    """Seconds between time ticks: a round interval giving about five ticks."""
    for step in (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if span / step <= 6:
            return step
    return 86400 * max(1, round(span / 86400 / 6))


def pilots_chart(history: Sequence[Point], width: int = 760, height: int = 240, title: str = "") -> Markup:
    """The queue page's plot: time axis (UTC), value axis, legend, pending dashed and running solid."""
    if not history:
        return _empty(width, height, title, "chart")
    times, series = _pilot_series(history)
    return series_chart(times, series, width, height, title=title, what="pending and running pilots")


def series_chart(times: Sequence[float], series: Sequence[Series], width: int = 760, height: int = 240,
                 title: str = "", what: str = "", ylabel: str = "pilots", end: float | None = None) -> Markup:
    """Lines over time with a time axis (UTC), a value axis and a legend; a None value is a gap.
    ``end``: where the time axis ends (default: the last time)."""
    if not times:
        return _empty(width, height, title, "chart")
    left, right, top_pad, bottom = 48, 14, 30, 34
    start, end = times[0], times[-1] if end is None else end
    span = max(end - start, 60.0)
    top = _top(series)
    step = nice_step(top)
    ymax = max(step, -(-top // step) * step)
    plot_w, plot_h = width - left - right, height - top_pad - bottom

    def x(when: float) -> float:
        return left + (when - start) / span * plot_w

    def y(value: float) -> float:
        return top_pad + plot_h - value / ymax * plot_h

    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="{LABEL_PX}" fill="{AXIS_COLOUR}">',
        f"<title>{escape(title)}: {escape(what or ylabel)} from "
        f"{utc(start, '%Y-%m-%d %H:%M') or '?'} to "
        f"{utc(end, '%Y-%m-%d %H:%M') or '?'} UTC</title>",
    ]
    for value in range(0, int(ymax) + 1, step):  # value axis: grid lines and labels
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     f'stroke="#e5e7eb"/>')
        parts.append(f'<text class="ytick" x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value}</text>')
    tick = time_step(span)
    first = -(-start // tick) * tick
    label = "%H:%M:%S" if tick < 60 else "%H:%M" if span < 2 * 86400 else "%m-%d %H:%M" if tick < 86400 else "%m-%d"
    when = first
    while when <= start + span:  # time axis
        parts.append(f'<line x1="{x(when):.1f}" x2="{x(when):.1f}" y1="{top_pad + plot_h}" '
                     f'y2="{top_pad + plot_h + 5}" stroke="{AXIS_COLOUR}"/>')
        parts.append(f'<text class="xtick" x="{x(when):.1f}" y="{top_pad + plot_h + 18}" text-anchor="middle">'
                     f"{(utc(when, label) or '?')}</text>")
        when += tick
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top_pad + plot_h}" y2="{top_pad + plot_h}" '
                 f'stroke="{AXIS_COLOUR}"/>')
    parts.append(f'<text x="{width - right}" y="{height - 2}" text-anchor="end">time (UTC)</text>')
    parts.append(f'<text x="{left}" y="14">{escape(ylabel)}</text>')
    legend_x = left + max(70, 7 * len(ylabel) + 24)  # after the value axis' label
    for name, colour, dash, _ in series:  # legend
        dashing = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line x1="{legend_x}" x2="{legend_x + 26}" y1="10" y2="10" stroke="{colour}" '
                     f'stroke-width="2"{dashing}/>')
        parts.append(f'<text x="{legend_x + 31}" y="14">{escape(name)}</text>')
        legend_x += 40 + 8 * len(name)
    parts.extend(_lines(times, series, x, y))
    parts.append("</svg>")
    return Markup("".join(parts))


def _span(seconds: float) -> str:
    return f"last {duration(seconds)}"
