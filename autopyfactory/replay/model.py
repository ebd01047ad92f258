"""The replay's model of a site: a WMS queue, a batch system of N slots, multi-job pilots.

A deterministic discrete-event simulation in simulated seconds (no sleeping,
no threads). What happens, in the operator's words:

- **Work** arrives in the WMS queue at the trace's submit times and waits
  there (FIFO) until a pilot takes it.
- **Status** is polled every ``status_interval`` seconds: WMS ready/running
  jobs, batch pending/running pilots, the queue waits of recently started
  pilots and the recently finished pilots. The policy sees the last poll, so
  what it sees is up to ``status_interval`` seconds old.
- **Every cycle** (``cycle`` seconds) the policy decides a number from that
  status, through the same safety rule as a live queue (no decision on a batch
  status not newer than the last submission). A positive number submits that
  many pilots; a negative one removes that many pilots that have not started
  (newest first).
- **The batch system** holds a submitted pilot for a queue delay drawn from
  ``queue_delay``; then the pilot waits FIFO for one of ``slots`` free slots.
- **A pilot** that starts asks for a job (getJob); when there is one it runs
  it and asks again; when there is none it tries again ``pilot_retry`` seconds
  later, and exits after ``pilot_tries`` empty tries in a row (PanDA pilots:
  two tries 60 s apart). It takes a job only if the job fits in its remaining
  wall time, and exits at ``walltime``. A job longer than the wall time is cut
  to it (the batch system would kill it there).

Metrics: payload wait (arrival -> a pilot starts it), empty pilots (started,
ran no job), wasted slot time (pilot slot time not running a job).
"""

from __future__ import annotations

import heapq
import math
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from autopyfactory.info import BatchQueueInfo, FinishedPilot, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo
from autopyfactory.replay.traces import Job

RECENT = 3600.0  # how far back queue waits and finished pilots are reported, like the batch plugins


@dataclass(frozen=True)
class Model:
    """The model's parameters, identical for every policy of one run."""

    slots: int = 200
    queue_delay: str = "exp:300"  # fixed:S | exp:MEAN | uniform:A:B (seconds)
    cycle: float = 120.0
    status_interval: float = 60.0
    pilot_tries: int = 2
    pilot_retry: float = 60.0
    walltime: float = 172800.0
    seed: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def delay_sampler(spec: str, rng: random.Random) -> Callable[[], float]:
    """``fixed:S``, ``exp:MEAN`` or ``uniform:A:B`` -> a function drawing one queue delay."""
    kind, _, rest = spec.partition(":")
    try:
        args = [float(x) for x in rest.split(":")] if rest else []
    except ValueError:
        args = None
    shapes = {"fixed": 1, "exp": 1, "uniform": 2}
    if kind not in shapes or args is None or len(args) != shapes[kind] or any(a < 0 for a in args):
        raise ValueError(f"queue delay: expected fixed:S, exp:MEAN or uniform:A:B with seconds >= 0, got {spec!r}")
    if kind == "fixed":
        return lambda: args[0]
    if kind == "exp":
        return (lambda: rng.expovariate(1.0 / args[0])) if args[0] > 0 else (lambda: 0.0)
    low, high = sorted(args)
    return lambda: rng.uniform(low, high)


class Pilot:
    __slots__ = ("id", "submitted", "started", "ended", "jobs", "busy", "state", "tries", "epoch")

    def __init__(self, number: int, submitted: float):
        self.id = number
        self.submitted = submitted
        self.started: float | None = None
        self.ended: float | None = None
        self.jobs = 0
        self.busy = 0.0  # seconds running jobs
        self.state = "pending"  # pending | idle | busy | done | removed
        self.tries = 0
        self.epoch = 0  # bumped on every change: events of an older epoch are stale


@dataclass
class Result:
    """One policy on one workload: the contract's metrics, plus the timeline for plots."""

    policy: str
    jobs: int
    jobs_done: int = 0
    waits: list[float] = field(default_factory=list)
    pilots: int = 0  # pilots that started
    empty: int = 0
    pilot_time: float = 0.0
    busy_time: float = 0.0
    submissions: int = 0
    removed: int = 0
    peak_pending_pilots: int = 0
    timeline: list[tuple[float, int, int, int, int]] = field(default_factory=list)  # t, ready, busy, pending, running
    # every cycle the policy decided: (t, ready, pending, running pilots, n)
    decisions: list[tuple[float, int, int, int, int]] = field(default_factory=list)

    def metrics(self) -> dict:
        waits = sorted(self.waits)
        return {
            "policy": self.policy,
            "jobs": self.jobs,
            "jobs_done": self.jobs_done,
            "payload_wait_mean": round(sum(waits) / len(waits), 1) if waits else None,
            "payload_wait_p50": percentile(waits, 0.50),
            "payload_wait_p95": percentile(waits, 0.95),
            "payload_wait_p99": percentile(waits, 0.99),
            "empty_pilot_fraction": round(self.empty / self.pilots, 4) if self.pilots else 0.0,
            "wasted_slot_fraction": round(1 - self.busy_time / self.pilot_time, 4) if self.pilot_time else 0.0,
            "pilots": self.pilots,
            "submissions": self.submissions,
            "peak_pending_pilots": self.peak_pending_pilots,
        }


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values: the smallest value with at least q of them at or below it."""
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)


# event kinds, in the order they run when they fall on the same second
ARRIVAL, JOB_END, WALL, RETRY, ELIGIBLE, POLL, CYCLE = range(7)


class Replay:
    """One policy on one workload. ``run()`` returns the Result."""

    def __init__(self, jobs: list[Job], model: Model, policy, timeline: bool = False,
                 progress: Callable[[str], None] | None = None):
        self.jobs = jobs
        self.model = model
        self.policy = policy
        self.record_timeline = timeline
        self.progress = progress
        self.delay = delay_sampler(model.queue_delay, random.Random(model.seed))
        self.result = Result(policy.name, len(jobs))
        self.events: list = []
        self.seq = 0
        self.queue: deque[int] = deque()  # WMS: jobs waiting, by index
        self.running_jobs = 0
        self.pending: dict[int, Pilot] = {}  # submitted, not started (in the delay or waiting for a slot)
        self.waiting: deque[Pilot] = deque()  # past the delay, waiting FIFO for a slot
        self.running: dict[int, Pilot] = {}
        self.free = model.slots
        self.pilot_count = 0
        self.started_recently: deque[tuple[float, float]] = deque()  # (start, queue wait)
        self.finished_recently: deque[FinishedPilot] = deque()
        self.snapshot: tuple[float, SchedInfo] | None = None
        self.last_submission: float | None = None
        self.horizon = (jobs[-1].submit if jobs else 0.0) + 30 * 86400.0

    # ------------------------------------------------------------ events
    def at(self, t: float, kind: int, obj=None, epoch: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, obj, epoch))

    def run(self) -> Result:
        for index, job in enumerate(self.jobs):
            self.at(job.submit, ARRIVAL, index)
        self.at(0.0, POLL)
        self.at(0.0, CYCLE)
        handlers = {ARRIVAL: self.arrival, JOB_END: self.job_end, WALL: self.wall, RETRY: self.retry,
                    ELIGIBLE: self.eligible, POLL: self.poll, CYCLE: self.cycle}
        shown = time.monotonic()
        while self.events:
            t, kind, _, obj, epoch = heapq.heappop(self.events)
            if isinstance(obj, Pilot) and epoch != obj.epoch:
                continue  # the pilot moved on since this event was planned
            handlers[kind](t, obj)
            if self.progress is not None and time.monotonic() - shown > 2.0:
                shown = time.monotonic()
                self.progress(f"{self.policy.name}: day {t / 86400:.0f}, "
                              f"{self.result.jobs_done}/{len(self.jobs)} jobs done")
        return self.result

    @property
    def finished(self) -> bool:
        return self.result.jobs_done == len(self.jobs)

    # ------------------------------------------------------------ work
    def arrival(self, t: float, index: int) -> None:
        self.queue.append(index)

    def get_job(self, t: float, pilot: Pilot) -> None:
        """The pilot asks for a job: run the first one that fits, or try again later, or exit."""
        left = pilot.started + self.model.walltime - t
        if self.queue and left > 0:
            job = self.jobs[self.queue[0]]
            runtime = min(job.runtime, self.model.walltime)
            if runtime <= left:
                self.queue.popleft()
                self.result.waits.append(t - job.submit)
                self.running_jobs += 1
                pilot.state, pilot.jobs, pilot.tries = "busy", pilot.jobs + 1, 0
                pilot.busy += runtime
                pilot.epoch += 1
                self.at(t + runtime, JOB_END, pilot, pilot.epoch)
                return
            return self.end_pilot(t, pilot)  # the next job does not fit: a fresh pilot will take it
        pilot.tries += 1
        if pilot.tries >= self.model.pilot_tries or left <= 0:
            return self.end_pilot(t, pilot)
        pilot.state = "idle"
        pilot.epoch += 1
        self.at(t + self.model.pilot_retry, RETRY, pilot, pilot.epoch)

    def job_end(self, t: float, pilot: Pilot) -> None:
        self.running_jobs -= 1
        self.result.jobs_done += 1
        self.get_job(t, pilot)

    def retry(self, t: float, pilot: Pilot) -> None:
        self.get_job(t, pilot)

    def wall(self, t: float, pilot: Pilot) -> None:
        self.end_pilot(t, pilot)  # a job always fits the wall time, so the pilot is idle here

    # ------------------------------------------------------------ batch system
    def submit(self, t: float, n: int) -> None:
        for _ in range(n):
            self.pilot_count += 1
            pilot = Pilot(self.pilot_count, t)
            self.pending[pilot.id] = pilot
            self.at(t + self.delay(), ELIGIBLE, pilot, pilot.epoch)
        self.result.submissions += n
        self.result.peak_pending_pilots = max(self.result.peak_pending_pilots, len(self.pending))

    def remove(self, t: float, n: int) -> None:
        for pilot_id in sorted(self.pending, reverse=True)[:n]:
            pilot = self.pending.pop(pilot_id)
            pilot.state = "removed"
            pilot.epoch += 1
            self.result.removed += 1
            self.finished_recently.append(FinishedPilot(str(pilot.id), None, t, None, "removed"))

    def eligible(self, t: float, pilot: Pilot) -> None:
        self.waiting.append(pilot)
        self.start_waiting(t)

    def start_waiting(self, t: float) -> None:
        while self.free > 0 and self.waiting:
            pilot = self.waiting.popleft()
            if pilot.state != "pending":
                continue  # removed while waiting
            del self.pending[pilot.id]
            self.free -= 1
            pilot.started = t
            self.running[pilot.id] = pilot
            self.started_recently.append((t, t - pilot.submitted))
            self.result.pilots += 1
            self.at(t + self.model.walltime, WALL, pilot, pilot.epoch)
            pilot.tries = 0
            self.get_job(t, pilot)

    def end_pilot(self, t: float, pilot: Pilot) -> None:
        pilot.state, pilot.ended = "done", t
        pilot.epoch += 1
        del self.running[pilot.id]
        self.free += 1
        self.result.pilot_time += t - pilot.started
        self.result.busy_time += pilot.busy
        if pilot.jobs == 0:
            self.result.empty += 1
        self.finished_recently.append(FinishedPilot(str(pilot.id), pilot.started, t, 0, "done"))
        self.start_waiting(t)

    # ------------------------------------------------------------ the factory
    def poll(self, t: float, _=None) -> None:
        """Both status pollers answer: what the next cycles will see."""
        while self.started_recently and self.started_recently[0][0] < t - RECENT:
            self.started_recently.popleft()
        while self.finished_recently and self.finished_recently[0].end < t - RECENT:
            self.finished_recently.popleft()
        busy = self.running_jobs
        wms = WMSQueueInfo(ready=len(self.queue), running=busy, done=self.result.jobs_done)
        batch = BatchQueueInfo(pending=len(self.pending), running=len(self.running),
                               finished=tuple(reversed(self.finished_recently)),
                               queue_waits=tuple(wait for _, wait in self.started_recently))
        self.snapshot = (t, SchedInfo(wms=wms, batch=batch, factory_pilots=len(self.pending) + len(self.running),
                                      now=t, finished=list(batch.finished)))
        if self.record_timeline:
            self.result.timeline.append((t, len(self.queue), busy, len(self.pending), len(self.running)))
        if not self.finished and t < self.horizon:
            self.at(t + self.model.status_interval, POLL)

    def cycle(self, t: float, _=None) -> None:
        taken, info = self.snapshot
        info.now = t
        if self.last_submission is not None and taken <= self.last_submission:
            n = 0  # a live queue waits for a batch status newer than its last submission
        else:
            n = self.policy.decide(info)
            self.result.decisions.append((t, info.wms.ready, info.batch.pending, info.batch.running, n))
        if n > 0:
            self.submit(t, n)
        elif n < 0:
            self.remove(t, -n)
        if n != 0:
            self.last_submission = t
        if not self.finished and t < self.horizon:
            self.at(t + self.model.cycle, CYCLE)


def replay(jobs: list[Job], model: Model, policy, timeline: bool = False, progress: bool = False) -> Result:
    """Run one policy on one workload."""
    report = (lambda line: print(line, file=sys.stderr, flush=True)) if progress else None
    return Replay(jobs, model, policy, timeline, report).run()
