"""Pilot counts over time: recent ones for the status page's plots, and the store's history over days.

Without a usable store, a cycle listener appends ``(time, pending, running)``
after every cycle to a small ring per queue (unknown batch status is kept as ``None``, a gap in the
plot, never a zero). The status page reads it through ``PilotHistory.series``,
which reads the persistence store instead when the factory has one (history
across restarts).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from markupsafe import Markup

from autopyfactory.timefmt import duration, iso, parse_duration, parse_time
from autopyfactory.web.plot import PENDING_COLOUR, PENDING_DASH, RUNNING_COLOUR, series_chart

if TYPE_CHECKING:
    from autopyfactory.queue import APFQueue
    from autopyfactory.records import CycleRecord

Point = tuple[float, "int | None", "int | None"]  # (epoch seconds, pending, running)

# 720 points: six hours of 30 s cycles, two days of the usual 240 s ones
RING_POINTS = 720
PLOT_SECONDS = 6 * 3600.0


class PilotHistory:
    """Bounded in-memory ring of (time, pending, running) per queue."""

    def __init__(self, points: int = RING_POINTS):
        self.points = points
        self._rings: dict[str, deque[Point]] = {}
        self._lock = threading.Lock()

    def cycle_done(self, queue: APFQueue, record: CycleRecord) -> None:
        """Factory cycle listener; keeps nothing while the store has the history (``series`` reads it)."""
        store = queue.store
        if store is not None and store.usable:
            return
        batch = record.batch
        pending = batch.get("pending") if batch else None
        running = batch.get("running") if batch else None
        self.add(queue.name, record.started, pending, running)

    def add(self, queue: str, when: float, pending: int | None, running: int | None) -> None:
        with self._lock:
            ring = self._rings.get(queue)
            if ring is None:
                ring = self._rings[queue] = deque(maxlen=self.points)
            ring.append((when, pending, running))

    def get(self, queue: str, since: float) -> list[Point]:
        with self._lock:
            return [p for p in self._rings.get(queue, ()) if p[0] >= since]

    def series(self, queue: APFQueue, seconds: float = PLOT_SECONDS) -> list[Point]:
        """(time, pending, running) of ``queue`` over the last ``seconds``, oldest first.

        From the persistence store when the factory has one (the plot survives
        restarts), otherwise from the in-memory ring.
        """
        store = queue.store
        if store is not None and store.usable:
            return store.pilot_series(queue.name, time.time() - seconds, max_points=RING_POINTS)
        return self.get(queue.name, time.time() - seconds)


# ---------------------------------------------------------------- history over days, from the store
SPANS = ("6h", "24h", "7d", "14d")  # the pages' choices; the API takes any
DEFAULT_SPAN = "24h"
DEFAULT_BUCKETS = 300  # a step is chosen to give at most this many buckets
MAX_BUCKETS = 2000  # a step asked for may not give more (the answer's size is bounded)
MIN_STEP = 10.0
MAX_AGE = 366 * 86400.0  # no history is kept longer than this (persistence.keepdays is 14 by default)
STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
ACTIVATED_COLOUR, ACTIVATED_DASH = "#009E73", "2 3"  # Okabe-Ito bluish green, dotted
DONE_COLOUR, FAULT_COLOUR, FAULT_DASH = "#0072B2", "#A50026", "6 2 2 2"


def window(since: str | None, step: str | None, now: float) -> tuple[float, float]:
    """(since, step) in seconds from a query: ``since`` a span back from now (``6h``, ``7d``) or a time (ISO
    8601), ``step`` seconds (``300``, ``5m``; default: a round step giving at most 300 buckets).
    ValueError says what is wrong."""
    text = since or DEFAULT_SPAN
    try:
        start = now - parse_duration(text)
    except ValueError:
        try:
            start = parse_time(text, now)
        except ValueError:
            raise ValueError(f"since: expected a span back from now (6h, 7d) or a time (2026-12-01T00:00Z), "
                             f"got {text[:60]!r}") from None
    if not now - MAX_AGE <= start < now:
        raise ValueError(f"since: expected a time in the last {MAX_AGE / 86400:.0f} days, got {text[:60]!r}")
    span = now - start
    if step is None:
        return start, float(next((s for s in STEPS if span / s <= DEFAULT_BUCKETS), STEPS[-1]))
    try:
        seconds = parse_duration(step)
    except ValueError as exc:
        raise ValueError(f"step: {exc}") from None
    if seconds < MIN_STEP or span / seconds > MAX_BUCKETS:
        raise ValueError(f"step: expected at least {max(MIN_STEP, math.ceil(span / MAX_BUCKETS)):g} s for "
                         f"{duration(span)} (at most {MAX_BUCKETS} buckets), got {step[:40]!r}")
    return start, seconds


def history_json(name: str | None, buckets: list[dict], since: float, step: float, now: float) -> dict:
    return {"queue": name, "since": iso(since), "until": iso(now), "step": step,
            "buckets": [{**b, "time": iso(b["time"])} for b in buckets]}


def history_charts(buckets: list[dict], title: str, now: float) -> tuple[Markup, Markup]:
    """Two charts of a history: pilots pending and running with the WMS's activated work; and pilots
    submitted, done and faulted per bucket."""
    times = [b["time"] for b in buckets]
    step = times[1] - times[0] if len(times) > 1 else 0
    per = f"per {duration(step)}" if step else ""

    def values(key: str) -> list:
        return [b[key] for b in buckets]

    pilots = series_chart(times, [("pending (most)", PENDING_COLOUR, PENDING_DASH, values("pending")),
                                  ("running (most)", RUNNING_COLOUR, "", values("running")),
                                  ("WMS activated", ACTIVATED_COLOUR, ACTIVATED_DASH, values("activated"))],
                          title=title, what="pilots pending and running, WMS activated", end=now)
    flow = series_chart(times, [("submitted", PENDING_COLOUR, PENDING_DASH, values("submitted")),
                                ("done", DONE_COLOUR, "", values("done")),
                                ("fault", FAULT_COLOUR, FAULT_DASH, values("fault"))],
                        title=title, what=f"pilots submitted, done and faulted {per}", ylabel=f"pilots {per}",
                        end=now)
    return pilots, flow
