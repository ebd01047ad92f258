"""A queue's pilots by state, for the pilots page and the API.

Pending, held and running pilots are asked of the batch status plugin
(``list_pilots``: one batch system query) when an operator looks, and the
answer is kept ``LIVE_SECONDS`` per queue, so reloading a page or paging
through thousands of pilots costs the batch system one query. Done and
faulted pilots come from the persistence store (or the batch system's
memory of the last hour without one).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from autopyfactory.info import FinishedPilot, LivePilot
from autopyfactory.timefmt import iso

if TYPE_CHECKING:
    from autopyfactory.queue import APFQueue
    from autopyfactory.web.logs import LogFiles

STATES = ("pending", "held", "running", "done", "fault")
LIVE = {"pending": ("pending",), "held": ("held",), "running": ("running", "exiting")}
LIVE_SECONDS = 15.0  # a listing of a queue's live pilots is asked of the batch system at most this often
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
FINISHED_SINCE = 86400.0  # done and fault: the pilots that ended in the last day
LOOK_BACK = 7 * 86400.0  # submission times of finished pilots are looked for this far before their end


class PilotLister:
    """Lists a queue's pilots in one state, a page at a time."""

    def __init__(self, logs: LogFiles):
        self.logs = logs
        self._live: dict[str, tuple[float, list[LivePilot] | None, str]] = {}  # queue -> (taken, pilots, error)
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def live(self, queue: APFQueue, now: float) -> tuple[list[LivePilot] | None, float, str]:
        """(pilots, when listed, why not) of the queue in the batch system, at most LIVE_SECONDS old."""
        with self._lock:
            lock = self._locks.setdefault(queue.name, threading.Lock())
        with lock:  # one batch system query per queue at a time, however many pages ask
            taken, pilots, error = self._live.get(queue.name, (0.0, None, ""))
            if now - taken > LIVE_SECONDS:
                try:
                    pilots, error = queue.batch_poller.plugin.list_pilots(queue.name), ""
                except NotImplementedError as exc:
                    pilots, error = None, str(exc)
                except Exception as exc:  # the batch system failed: say why, never an empty list
                    pilots, error = None, f"cannot list the pilots: {type(exc).__name__}: {exc}"
                taken = time.time()
                self._live[queue.name] = (taken, pilots, error)
            return pilots, taken, error

    def page(self, queue: APFQueue, state: str, offset: int, limit: int, now: float) -> dict:
        """One page of the queue's pilots in ``state`` as JSON (``error`` set when they cannot be listed)."""
        if state not in STATES:
            raise ValueError(f"state: expected one of {', '.join(STATES)}, got {state[:40]!r}")
        answer = {"queue": queue.name, "state": state, "offset": offset, "limit": limit}
        if state in LIVE:
            pilots, taken, error = self.live(queue, now)
            if pilots is None:
                return {**answer, "total": None, "pilots": [], "error": error, "listed": None}
            chosen = [p for p in pilots if p.state in LIVE[state]]
            return {**answer, "total": sum(p.count for p in chosen), "listed": iso(taken), "error": "",
                    "pilots": [self.live_row(queue.name, p, now) for p in chosen[offset:offset + limit]]}
        finished, total = self.finished(queue, state, offset, limit, now)
        submitted = {}
        store = queue.store
        if finished and store is not None and store.usable:
            submitted = store.submitted_times(queue.name, [p.jobid for p in finished],
                                              min(p.end for p in finished) - LOOK_BACK)
        return {**answer, "total": total, "listed": iso(now), "error": "", "since": iso(now - FINISHED_SINCE),
                "pilots": [self.finished_row(queue.name, p, submitted.get(p.jobid)) for p in finished]}

    def finished(self, queue: APFQueue, state: str, offset: int, limit: int, now: float
                 ) -> tuple[list[FinishedPilot], int]:
        store = queue.store
        if store is not None and store.usable:
            return store.finished_page(queue.name, state, now - FINISHED_SINCE, offset, limit)
        pilots = [p for p in queue.finished_pilots(now) if p.state == state]  # the batch system's memory
        return pilots[offset:offset + limit], len(pilots)

    def live_row(self, queue: str, pilot: LivePilot, now: float) -> dict:
        waited = None if pilot.submitted is None else (pilot.start or now) - pilot.submitted
        return {"jobid": pilot.jobid, "state": pilot.state, "count": pilot.count,
                "submitted": iso(pilot.submitted), "started": iso(pilot.start), "ended": None,
                "queue_wait": None if waited is None else round(max(0.0, waited), 1),
                "exit_code": None, "reason": pilot.reason,
                "logs": dict(self.logs.pilot_files(queue, pilot.jobid, pilot.submitted or now))
                if pilot.count == 1 else {}}

    def finished_row(self, queue: str, pilot: FinishedPilot, submitted: float | None) -> dict:
        waited = None if submitted is None or pilot.start is None else max(0.0, pilot.start - submitted)
        return {"jobid": pilot.jobid, "state": pilot.state, "count": 1, "submitted": iso(submitted),
                "started": iso(pilot.start), "ended": iso(pilot.end),
                "queue_wait": None if waited is None else round(waited, 1), "exit_code": pilot.exitcode,
                "reason": "", "logs": dict(self.logs.pilot_files(queue, pilot.jobid, pilot.end))}
