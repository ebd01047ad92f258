"""Recent pilot counts per queue, for the status page's plots.

Without a usable store, a cycle listener appends ``(time, pending, running)``
after every cycle to a small ring per queue (unknown batch status is kept as ``None``, a gap in the
plot, never a zero). The status page reads it through ``PilotHistory.series``,
which reads the persistence store instead when the factory has one (history
across restarts).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

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
