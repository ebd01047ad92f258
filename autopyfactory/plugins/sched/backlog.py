"""Built-in scheduler plugin Backlog: pilots for the work nobody else will pick up in time.

``Ready`` gives every ready job a pilot unless one is pending. But a factory
also has pilots already running: multi-job pilots ask for the next job as
soon as theirs ends, and a pilot that found nothing keeps asking for a minute
before it exits. Those pilots take ready work long before a new pilot gets
through the batch queue, and each new pilot sent for that work starts empty.
Backlog counts them, can take back pending pilots that no work is left for,
and can send pilots ahead for the work that keeps arriving while a pilot
waits in the batch queue. Semantics and examples: docs/schedulers.md;
measurements: docs/provisioning.md.
"""

from __future__ import annotations

import math
import statistics

from autopyfactory.config import Key
from autopyfactory.info import BatchQueueInfo, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo
from autopyfactory.plugins.sched._common import StatusStep

RECENT_PILOTS = 3  # the fewest recent starts the queue wait is taken from: fewer is one or two pilots' luck


class Backlog(StatusStep):
    """Pilots for the ready work that pending and idle running pilots will not take.

    Keys: ``sched.backlog.offset`` (0): ready jobs to leave alone;
    ``sched.backlog.idlerunning`` (true): count idle running pilots as taking work;
    ``sched.backlog.removeidle`` (false): when more pilots are pending than
    the work needs, ask to remove the excess (pilots that have not started);
    ``sched.backlog.lookahead`` (0 = off): also send pilots for the work
    expected to arrive while a pilot waits in the batch queue, times this
    factor; ``sched.backlog.window`` (5): cycles the arrival rate is the
    median of; ``sched.backlog.waitspan`` (600): seconds of pilot starts the
    queue wait is taken from.
    Output: ``ready - offset - pending - idle + expected``, at least 0 (or at
    least ``-pending`` with removeidle), where ``idle = max(0, running pilots
    - WMS running jobs)`` (0 with idlerunning false) and ``expected = floor(arrival rate x queue wait x
    lookahead)``: the queue wait is the median of ``BatchQueueInfo.queue_waits``
    (the batch system's submit and start times of the pilots that started in
    the last hour) of the pilots that started in the last ``waitspan``
    seconds, or of the whole hour when fewer than 3 did or the plugin gives no
    start times (just after a burst the hour holds pilots that waited long for a
    free slot, not for the batch queue), the arrival rate the median over the last ``window``
    cycles of the growth of ready + running jobs per second. 0 when status is
    unknown.
    """

    name = "Backlog"
    keys = {
        "offset": Key("int", 0, min=0, help="ready jobs to leave alone"),
        "idlerunning": Key("bool", True, help="count running pilots without a job as taking ready work"),
        "removeidle": Key("bool", False, help="ask to remove pending pilots beyond the work"),
        "lookahead": Key("float", 0.0, min=0, help="pilots for work expected during the queue wait, x this (0: off)"),
        "window": Key("int", 5, min=1, help="cycles of arrivals the arrival rate is the median of"),
        "waitspan": Key("int", 600, min=1, help="seconds of pilot starts the look-ahead's queue wait is taken from"),
    }

    def __init__(self, queue, factory):
        super().__init__(queue, factory)
        self._seen: tuple[float, int] | None = None  # (time, ready + running) at the previous cycle
        self._rates: list[float] = []  # new work per second in the last ``window`` cycles

    def arrival_rate(self, wms: WMSQueueInfo, now: float) -> float:
        """Median new work per second over the last cycles (a lower bound: work that came and went
        between two cycles is not seen)."""
        total = wms.ready + wms.running
        if self._seen is not None and now > self._seen[0]:
            self._rates.append(max(0, total - self._seen[1]) / (now - self._seen[0]))
            del self._rates[:-self.options["window"]]
        self._seen = (now, total)
        return statistics.median(self._rates) if self._rates else 0.0

    def queue_wait(self, batch: BatchQueueInfo, now: float) -> tuple[float, str]:
        """The median queue wait of the pilots that started in the last ``waitspan`` seconds (the hour's when
        fewer than RECENT_PILOTS did, or the plugin gives no start times), and which span it is of."""
        if len(batch.queue_wait_starts) == len(batch.queue_waits):
            since = now - self.options["waitspan"]
            recent = [w for w, start in zip(batch.queue_waits, batch.queue_wait_starts, strict=True) if start >= since]
            if len(recent) >= RECENT_PILOTS:
                return statistics.median(recent), f"last {self.options['waitspan']} s"
        return statistics.median(batch.queue_waits), "last hour"

    def compute(self, n: int, wms: WMSQueueInfo, batch: BatchQueueInfo, info: SchedInfo) -> tuple[int, str]:
        offset, lookahead = self.options["offset"], self.options["lookahead"]
        idle = max(0, batch.running - wms.running) if self.options["idlerunning"] else 0
        rate = self.arrival_rate(wms, info.now)
        expected, ahead = 0, ""
        if lookahead > 0 and batch.queue_waits:
            wait, span = self.queue_wait(batch, info.now)
            mean = rate * wait * lookahead
            expected = math.floor(mean - math.sqrt(mean)) if mean > 1 else 0  # arrivals count at least this
            ahead = (f" + {expected} expected ({rate * 3600:.0f}/h x {wait:.0f} s queue wait, {span},"
                     f" x {lookahead:g})")
        need = wms.ready - offset - batch.pending - idle + expected
        floor = -batch.pending if self.options["removeidle"] else 0
        out = max(need, floor)
        what = f": remove {-out} pending" if out < 0 else ""
        return out, (f"Backlog: {out} ({wms.ready} ready - {offset} offset - {batch.pending} pending"
                     f" - {idle} idle running{ahead}){what}")
