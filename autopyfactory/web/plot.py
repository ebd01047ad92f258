"""A queue's pilots over time as a small inline SVG (no JavaScript, no CDN)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from autopyfactory.timefmt import duration

PENDING_COLOUR = "#d97706"
RUNNING_COLOUR = "#15803d"


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


def pilots_svg(
    history: Sequence[tuple[float, int | None, int | None]],
    width: int = 180,
    height: int = 44,
    title: str = "",
) -> Markup:
    """Pending (amber) and running (green) pilots over the span of ``history``."""
    pad_top, pad_bottom, pad_left = 9, 2, 2
    plot_h = height - pad_top - pad_bottom
    plot_w = width - 2 * pad_left
    if not history:
        return Markup(
            f'<svg class="plot" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{escape(title)}: no cycles yet</title>"
            f'<text x="{width / 2:.0f}" y="{height / 2 + 4:.0f}" text-anchor="middle" '
            f'font-size="10" fill="#6b7280">no data yet</text></svg>'
        )
    start, end = history[0][0], history[-1][0]
    span = max(end - start, 1.0)
    top = max([v for _, p, r in history for v in (p, r) if v is not None] or [0])
    scale = max(top, 1)

    def xy(when: float, value: int) -> str:
        x = pad_left + (when - start) / span * plot_w if len(history) > 1 else width / 2
        y = pad_top + plot_h - value / scale * plot_h
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg class="plot" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}: pending (amber) and running (green) pilots, "
        f"last {duration(span)} up to {time.strftime('%H:%M:%S', time.gmtime(end))} UTC, max {top}</title>",
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#fafafa" stroke="#e5e7eb"/>',
        f'<text x="{width - 3}" y="8" text-anchor="end" font-size="8" fill="#6b7280">max {top}</text>',
        f'<text x="3" y="8" font-size="8" fill="#6b7280">last {escape(duration(span))}</text>',
    ]
    for index, colour in ((1, PENDING_COLOUR), (2, RUNNING_COLOUR)):
        series = [(p[0], p[index]) for p in history]
        for run in _segments(series):
            coords = " ".join(xy(when, value) for when, value in run)
            if len(run) == 1:
                x, y = coords.split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="1.8" fill="{colour}"/>')
            else:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>'
                )
    parts.append("</svg>")
    return Markup("".join(parts))
