"""One tally of a batch status poll, for every batch status plugin that sees the whole
batch system (not a plugin module: its name starts with ``_``).

The plugin reads its batch system its own way and tells the tally what each
pilot is; the tally counts, per factory queue, this factory's pending (held
among them) and running (exiting among them) pilots, collects the finished ones, and counts other
factories' pilots per WMS queue (``BatchQueueInfo.peers``, see peers.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from autopyfactory.info import MAX_REASONS, OTHER_REASON, BatchQueueInfo, FinishedPilot

LIVE_STATES = ("pending", "running")  # what is counted; the other states end up in ``finished``


def _configured(context: Any) -> Mapping[str, Any]:
    """The factory's queue sections by name ({} without a config)."""
    config = getattr(context, "config", None)
    return config.queues if config is not None else {}


def wms_queues(context: Any, queues: Collection[str]) -> dict[str, str]:
    """The WMS queue of each factory queue (its own name when the config does not know it)."""
    known = _configured(context)
    return {q: known[q].wmsqueue if q in known else q for q in queues}


def monitored_queues(context: Any, queues: Collection[str]) -> set[str]:
    """The queues with a monitor (``monitorsection``): only theirs need each running pilot by id."""
    known = _configured(context)
    return {q for q in queues if q in known and getattr(known[q], "values", {}).get("monitorsection")}


class Tally:
    def __init__(self, wms_of: Mapping[str, str], monitored: Collection[str] = ()):
        self.wms_of = wms_of  # factory queue -> WMS queue, for every queue asked about
        self.wms_wanted = set(wms_of.values())
        self.counts = {q: {"pending": 0, "running": 0, "held": 0, "exiting": 0} for q in wms_of}
        self.peers: dict[str, dict[str, dict[str, float]]] = {}  # wmsqueue -> factory -> counts
        # (start time, queue wait) of recently started pilots
        self.waits: dict[str, list[tuple[float, float]]] = {q: [] for q in wms_of}
        self.reasons: dict[str, dict[str, int]] = {q: {} for q in wms_of}  # why pending pilots wait
        # running pilots by batch id -> state, for the queues with a monitor only (it costs about 15 %
        # of reading 100,000 running Slurm lines, and nothing else reads it)
        self.active: dict[str, dict[str, str]] = {q: {} for q in wms_of if q in monitored}

    def mine(self, queue: str, state: str, count: int = 1, held: bool = False, exiting: bool = False,
             reason: str = "", jobid: str = "") -> None:
        """``count`` pilots of this factory's ``queue`` in a live ``state`` (pending or running);
        ``held`` ones are counted in pending too, ``exiting`` ones (ending, still there) in running;
        ``reason``: why pending ones wait, as the batch system says it; ``jobid``: the batch id of a
        running pilot (``BatchQueueInfo.active``, what APFMon is told; kept for monitored queues)."""
        bucket = self.counts[queue]
        bucket[state] += count
        if held:
            bucket["held"] += count
        if exiting:
            bucket["exiting"] += count
        if jobid and state == "running" and queue in self.active:
            self.active[queue][jobid] = "exiting" if exiting else "running"
        if reason and state == "pending":
            reasons = self.reasons[queue]
            if reason not in reasons and len(reasons) >= MAX_REASONS:
                reason = OTHER_REASON
            reasons[reason] = reasons.get(reason, 0) + count

    def waited(self, queue: str, submitted: float | None, started: float | None, now: float,
               window: float = 3600.0) -> None:
        """A pilot of ``queue`` submitted and started at these times: keep its wait in the batch queue
        and its start time when it started in the last ``window`` seconds (what the Backlog scheduler reads)."""
        if submitted is not None and started is not None and now - window <= started <= now:
            self.waits[queue].append((started, max(0.0, started - submitted)))

    def peer(self, wmsqueue: str, factory: str, state: str, count: int = 1,
             submitted: float | None = None) -> None:
        """``count`` live pilots of another ``factory`` serving ``wmsqueue``, submitted at ``submitted``."""
        peer = self.peers.setdefault(wmsqueue, {}).setdefault(
            factory, {"pending": 0, "running": 0, "submitted_last": 0.0})
        peer[state] += count
        if submitted is not None and submitted > peer["submitted_last"]:
            peer["submitted_last"] = submitted

    def answer(self, finished: Mapping[str, Iterable[FinishedPilot]]) -> dict[str, BatchQueueInfo]:
        """{queue: BatchQueueInfo}; ``finished``: each queue's ended pilots (done/fault/empty count them)."""
        answer = {}
        for queue, wmsqueue in self.wms_of.items():
            ended = tuple(sorted(finished.get(queue, ()), key=lambda p: -p.end))
            c = self.counts[queue]
            answer[queue] = BatchQueueInfo(
                pending=c["pending"], running=c["running"], held=c["held"], exiting=c["exiting"],
                done=sum(1 for p in ended if p.state == "done"),
                fault=sum(1 for p in ended if p.state == "fault"),
                empty=sum(1 for p in ended if p.state == "empty"),
                finished=ended, peers={f: dict(v) for f, v in self.peers.get(wmsqueue, {}).items()},
                queue_waits=tuple(w for _, w in self.waits[queue]),
                queue_wait_starts=tuple(t for t, _ in self.waits[queue]), reasons=self.reasons[queue],
                active=self.active.get(queue, {}),
            )
        return answer
