"""The replay's model of a site: WMS queues, a batch system with a pool of cores, pilots.

A deterministic discrete-event simulation in simulated seconds (no sleeping,
no threads). What happens, in the operator's words (docs/provisioning.md,
"Method", gives every option, its default and where the default comes from):

- **Work** arrives in the WMS queue at the trace's submit times and waits
  there (FIFO) until a pilot takes it. With several queues sharing the pool
  (``share``), the trace's jobs go to the queues in turn.
- **Status** is polled by two pollers, WMS and batch, every
  ``status_interval`` seconds each, from their own phase (``status_phase``;
  drawn from the seed when not given) and with ``status_jitter`` (a fraction
  of the interval, uniform) on every interval: what a cycle sees is up to an
  interval old and not aligned with the cycles.
- **Every cycle** (``cycle`` seconds) the policy decides a number from that
  status, through the same safety rule as a live queue (no decision on a batch
  status not newer than the last submission). A positive number submits that
  many pilots; a negative one asks to remove that many pilots that have not
  started (newest first). A removal lands ``removal_delay`` seconds later; a
  pilot that started meanwhile keeps running (a removal that lost the race).
- **The batch system** holds a submitted pilot for a queue delay drawn from
  ``queue_delay`` plus ``delay_per_pending`` seconds for every pilot of its
  queue already pending; then the pilot waits FIFO for ``pilot_cores`` free
  cores of the ``slots`` cores of the pool.
- **A pilot** that starts may fail at once (``start_failure``, or any start
  within the ``black_hole`` period): it ends ``FAIL_AFTER`` seconds later
  without asking for work. Otherwise it asks for work (getJob) and takes
  every job that fits its free cores and its remaining wall time (jobs of
  one core, or the trace's processors up to the pilot's cores with
  ``job_cores = trace``); when none is there it asks again ``retry`` seconds
  later and exits after ``tries`` empty tries in a row. After its first job
  it takes new work only while it has run less than ``timefloor`` seconds
  (PanDA's rule; 0 = one job per pilot). Peers whose pilots live otherwise
  (glideins, drones) bring their own ``Lifecycle``.

Metrics: payload wait (arrival -> a pilot starts it), empty pilots (started,
did not fail, ran no job), wasted slot time (pilot core time not running a
job), removals that lost the race, failed pilots.
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
from autopyfactory.replay.traces import MAX_SPAN, Job

RECENT = 3600.0  # how far back queue waits and finished pilots are reported, like the batch plugins
FAIL_AFTER = 60.0  # seconds a pilot that fails to start holds its cores
# the site as the first version of the model saw it, and as the separate model that cross-checked it:
# polls aligned with the cycles, removal instant and exact, pilots taking work for their whole wall time
IDEAL = {"status_phase": 0.0, "status_jitter": 0.0, "removal_delay": 0.0, "timefloor": 172800.0}
DRAIN_AFTER = 30 * 86400.0  # policies stop deciding this long after the last arrival; the run then drains
MAX_CYCLES = 5_000_000  # cycles (and polls) of one run: a run longer than this is refused before it starts
FIT_SCAN = 16  # ready jobs a pilot with free cores looks at for one that fits


class ModelError(ValueError):
    """A model option out of its bounds; the message names the option and the bound."""


# option: (lowest, highest, unit) — the bounds every run is checked against (docs/provisioning.md, "Input limits")
BOUNDS = {
    "slots": (1, 1_000_000, "cores"),
    "cycle": (10.0, 86400.0, "s"),
    "status_interval": (10.0, 86400.0, "s"),
    "status_jitter": (0.0, 0.5, "of the interval"),
    "pilot_tries": (1, 1000, "tries"),
    "pilot_retry": (1.0, 86400.0, "s"),
    "timefloor": (0.0, 30 * 86400.0, "s"),
    "walltime": (60.0, 30 * 86400.0, "s"),
    "removal_delay": (0.0, 86400.0, "s"),
    "delay_per_pending": (0.0, 3600.0, "s"),
    "pilot_cores": (1, 1024, "cores"),
    "start_failure": (0.0, 0.99, "fraction"),
}
MAX_DELAY = 7 * 86400.0  # a queue delay's seconds


@dataclass(frozen=True)
class Lifecycle:
    """How a pilot lives once started: empty tries before its first job and after one, their spacing,
    PanDA's timefloor (new work only while it has run less than this; 0 = one job), and whether it runs
    several jobs at once while they fit its cores (a partitionable slot) or one at a time."""

    first_tries: int
    tries: int
    retry: float
    timefloor: float
    partitionable: bool = False


@dataclass(frozen=True)
class Model:
    """The model's parameters, identical for every policy of one run. Checked on creation (ModelError)."""

    slots: int = 200
    queue_delay: str = "exp:300"  # fixed:S | exp:MEAN | uniform:A:B (seconds)
    delay_per_pending: float = 0.0
    cycle: float = 120.0
    status_interval: float = 60.0
    status_phase: float | None = None  # None: each poller's phase drawn from the seed
    status_jitter: float = 0.1
    pilot_tries: int = 2
    pilot_retry: float = 60.0
    timefloor: float = 0.0
    walltime: float = 172800.0
    removal_delay: float = 60.0
    pilot_cores: int = 1
    job_cores: str = "one"  # one | trace
    start_failure: float = 0.0
    black_hole: str = ""  # START:LENGTH seconds: every pilot starting then fails
    share: tuple[str, ...] = ()  # policies of other queues sharing the pool
    queue_waits: tuple[float, ...] = ()  # recorded queue waits (apf replay --store): delays drawn from these
    seed: int = 1

    def __post_init__(self):
        for name, (low, high, unit) in BOUNDS.items():
            value = getattr(self, name)
            kind = int if isinstance(low, int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high or (kind is int and value != int(value)):
                what = "an integer" if kind is int else "a number"
                raise ModelError(f"{name.replace('_', '-')}: expected {what} from {low:,.10g} to {high:,.10g} {unit}, "
                                 f"got {value!r}")
        if self.status_phase is not None and not (math.isfinite(self.status_phase)
                                                  and 0 <= self.status_phase < self.status_interval):
            raise ModelError(f"status-phase: expected seconds from 0 to below the status interval "
                             f"({self.status_interval:g}), got {self.status_phase!r}")
        if self.job_cores not in ("one", "trace"):
            raise ModelError(f"job-cores: expected one or trace, got {self.job_cores!r}")
        delay_sampler(self.queue_delay, random.Random(0))
        black_hole_window(self.black_hole)
        if not all(isinstance(w, (int, float)) and 0 <= w <= MAX_DELAY for w in self.queue_waits):
            raise ModelError(f"queue waits: expected seconds from 0 to {MAX_DELAY:g}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["share"] = list(self.share)
        if self.queue_waits:  # the recorded waits, summarised
            waits = sorted(self.queue_waits)
            data["queue_delay"] = f"recorded ({len(waits)} queue waits, median {waits[len(waits) // 2]:.0f} s)"
        del data["queue_waits"]
        return data

    def pilot(self) -> Lifecycle:
        return Lifecycle(self.pilot_tries, self.pilot_tries, self.pilot_retry, self.timefloor)


def _seconds(text: str, what: str, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ModelError(what) from None
    if not math.isfinite(value) or not 0 <= value <= high:
        raise ModelError(what)
    return value


def delay_sampler(spec: str, rng: random.Random) -> Callable[[], float]:
    """``fixed:S``, ``exp:MEAN`` or ``uniform:A:B`` -> a function drawing one queue delay (finite, <= 7 days)."""
    kind, _, rest = spec.partition(":")
    shapes = {"fixed": 1, "exp": 1, "uniform": 2}
    complaint = (f"queue delay: expected fixed:S, exp:MEAN or uniform:A:B with finite seconds from 0 to "
                 f"{MAX_DELAY:g}, got {spec!r}")
    args = rest.split(":") if rest else []
    if kind not in shapes or len(args) != shapes[kind]:
        raise ModelError(complaint)
    args = [_seconds(a, complaint, MAX_DELAY) for a in args]
    if kind == "fixed":
        return lambda: args[0]
    if kind == "exp":  # a draw is capped at the bound, so one unlucky pilot cannot wait for ever
        return (lambda: min(rng.expovariate(1.0 / args[0]), MAX_DELAY)) if args[0] > 0 else (lambda: 0.0)
    low, high = sorted(args)
    return lambda: rng.uniform(low, high)


def black_hole_window(spec: str) -> tuple[float, float] | None:
    """``START:LENGTH`` seconds -> (start, end), or None for ''."""
    if not spec:
        return None
    complaint = f"black-hole: expected START:LENGTH in finite seconds from 0 to {MAX_SPAN:g}, got {spec!r}"
    parts = spec.split(":")
    if len(parts) != 2:
        raise ModelError(complaint)
    start, length = (_seconds(p, complaint, MAX_SPAN) for p in parts)
    return start, start + length


class Pilot:
    __slots__ = ("id", "queue", "submitted", "started", "ended", "jobs", "active", "free", "busy", "state",
                 "tries", "epoch", "removing", "draining", "rule")

    def __init__(self, number: int, queue: Queue, submitted: float, cores: int):
        self.id = number
        self.queue = queue
        self.submitted = submitted
        self.started: float | None = None
        self.ended: float | None = None
        self.jobs = 0  # jobs taken
        self.active = 0  # jobs running now
        self.free = cores  # cores not running a job
        self.busy = 0.0  # core-seconds running jobs
        self.state = "pending"  # pending | running | done | removed
        self.tries = 0
        self.epoch = 0  # bumped when the pilot asks for work: a retry of an older epoch is stale
        self.removing = False
        self.draining = False
        self.rule: Lifecycle = queue.rule


@dataclass
class Result:
    """One policy on one workload: the contract's metrics, plus the timeline for plots."""

    policy: str
    jobs: int
    jobs_done: int = 0
    waits: list[float] = field(default_factory=list)
    pilots: int = 0  # pilots that started
    empty: int = 0  # started, did not fail, ran no job
    failed: int = 0  # started and failed at once
    pilot_time: float = 0.0  # core-seconds
    busy_time: float = 0.0  # core-seconds
    submissions: int = 0
    removed: int = 0
    removals_lost: int = 0  # removals that came after the pilot had started
    peak_pending_pilots: int = 0
    timeline: list[tuple[float, int, int, int, int]] = field(default_factory=list)  # t, ready, busy, pending, running
    # every cycle the policy decided: (t, ready, pending, running pilots, n)
    decisions: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    neighbours: list[Result] = field(default_factory=list)  # the other queues of the pool

    def metrics(self) -> dict:
        waits = sorted(self.waits)
        ran = self.pilots - self.failed
        data = {
            "policy": self.policy,
            "jobs": self.jobs,
            "jobs_done": self.jobs_done,
            "payload_wait_mean": round(sum(waits) / len(waits), 1) if waits else None,
            "payload_wait_p50": percentile(waits, 0.50),
            "payload_wait_p95": percentile(waits, 0.95),
            "payload_wait_p99": percentile(waits, 0.99),
            "empty_pilot_fraction": round(self.empty / ran, 4) if ran else 0.0,
            "wasted_slot_fraction": round(1 - self.busy_time / self.pilot_time, 4) if self.pilot_time else 0.0,
            "pilots": self.pilots,
            "submissions": self.submissions,
            "peak_pending_pilots": self.peak_pending_pilots,
            "removed": self.removed,
            "removals_lost": self.removals_lost,
            "failed_pilots": self.failed,
        }
        if self.neighbours:
            data["neighbours"] = [n.metrics() for n in self.neighbours]
        return data


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values: the smallest value with at least q of them at or below it."""
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)


class Queue:
    """One WMS queue with its factory queue: its work, its pilots, its policy and what it last saw."""

    def __init__(self, policy, jobs: list[Job], rule: Lifecycle, timeline: bool):
        self.policy = policy
        self.jobs = jobs
        self.rule = getattr(policy, "pilot", None) or rule
        self.result = Result(policy.name, len(jobs))
        self.record_timeline = timeline
        self.waiting: deque[int] = deque()  # jobs ready in the WMS, by index
        self.running_jobs = 0  # cores of this queue's jobs running (1 per job with single-core jobs)
        self.pending: dict[int, Pilot] = {}  # submitted, not started (in the delay or waiting for cores)
        self.running: dict[int, Pilot] = {}
        self.started_recently: deque[tuple[float, float]] = deque()  # (start, queue wait)
        self.finished_recently: deque[FinishedPilot] = deque()
        self.wms: tuple[float, WMSQueueInfo] | None = None
        self.batch: tuple[float, BatchQueueInfo] | None = None
        self.last_submission: float | None = None

    @property
    def finished(self) -> bool:
        return self.result.jobs_done == len(self.jobs)


# event kinds, in the order they run when they fall on the same second
ARRIVAL, JOB_END, REMOVE, RETRY, ELIGIBLE, FAILED, POLL_WMS, POLL_BATCH, CYCLE = range(9)


class Replay:
    """One policy on one workload (and the policies sharing its pool). ``run()`` returns the Result."""

    def __init__(self, jobs: list[Job], model: Model, policy, timeline: bool = False,
                 progress: Callable[[str], None] | None = None, neighbours: list | None = None,
                 limits: tuple[int, int] | None = None):
        self.model = model
        self.limits = limits
        self.progress = progress
        draws = random.Random(model.seed)
        self.delay = (delay_sampler(model.queue_delay, draws) if not model.queue_waits
                      else lambda: draws.choice(model.queue_waits))
        self.failures = random.Random(model.seed + 1)  # the k-th pilot to start fails alike for every policy
        self.phases = random.Random(model.seed + 2)
        self.jitter = random.Random(model.seed + 3)
        self.hole = black_hole_window(model.black_hole)
        policies = [policy, *(neighbours or [])]
        if model.job_cores == "trace":
            jobs = [Job(j.submit, j.runtime, min(j.cores, model.pilot_cores)) for j in jobs]
        elif any(j.cores != 1 for j in jobs):
            jobs = [Job(j.submit, j.runtime) for j in jobs]
        self.queues = [Queue(p, jobs[i::len(policies)], model.pilot(), timeline and i == 0)
                       for i, p in enumerate(policies)]
        self.events: list = []
        self.seq = 0
        self.waiting: deque[Pilot] = deque()  # past the delay, waiting FIFO for cores
        self.free = model.slots
        self.pilot_count = 0
        self.horizon = (jobs[-1].submit if jobs else 0.0) + DRAIN_AFTER
        cycles = self.horizon / min(model.cycle, model.status_interval)
        if cycles > MAX_CYCLES:
            raise ModelError(f"the run would take {cycles:.3g} cycles or polls ({self.horizon / 86400:.0f} days "
                             f"of simulated time at one every {min(model.cycle, model.status_interval):g} s), more "
                             f"than the limit {MAX_CYCLES:,}: use a longer cycle or status interval, or a shorter "
                             "trace")

    @property
    def result(self) -> Result:
        return self.queues[0].result

    # ------------------------------------------------------------ events
    def at(self, t: float, kind: int, obj=None, epoch: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, obj, epoch))

    def run(self) -> Result:
        for queue in self.queues:
            for index, job in enumerate(queue.jobs):
                self.at(job.submit, ARRIVAL, (queue, index))
            for kind in (POLL_WMS, POLL_BATCH):
                phase = (self.model.status_phase if self.model.status_phase is not None
                         else self.phases.uniform(0, self.model.status_interval))
                self.at(phase, kind, queue)
            self.at(0.0, CYCLE, queue)
        handlers = {ARRIVAL: self.arrival, JOB_END: self.job_end, REMOVE: self.removal, RETRY: self.ask,
                    ELIGIBLE: self.eligible, FAILED: self.failed, POLL_WMS: self.poll_wms,
                    POLL_BATCH: self.poll_batch, CYCLE: self.cycle}
        shown = time.monotonic()
        while self.events:
            t, kind, _, obj, epoch = heapq.heappop(self.events)
            if kind == RETRY and epoch != obj.epoch:
                continue  # the pilot asked again since this retry was planned
            handlers[kind](t, obj)
            if self.progress is not None and time.monotonic() - shown > 2.0:
                shown = time.monotonic()
                self.progress(f"{self.result.policy}: day {t / 86400:.0f}, "
                              f"{self.result.jobs_done}/{self.result.jobs} jobs done")
        self.result.neighbours = [q.result for q in self.queues[1:]]
        return self.result

    def next_poll(self, t: float) -> float:
        interval = self.model.status_interval
        if self.model.status_jitter:
            interval *= 1 + self.jitter.uniform(-self.model.status_jitter, self.model.status_jitter)
        return t + interval

    # ------------------------------------------------------------ work
    def arrival(self, t: float, obj) -> None:
        queue, index = obj
        queue.waiting.append(index)

    def fitting(self, queue: Queue, cores: int) -> int | None:
        """Position in the WMS queue of the first of the next FIT_SCAN jobs needing at most ``cores``."""
        for position, index in enumerate(queue.waiting):
            if position >= FIT_SCAN:
                return None
            if queue.jobs[index].cores <= cores:
                return position
        return None

    def ask(self, t: float, pilot: Pilot) -> None:
        """The pilot asks for work (getJob): takes what fits, or tries again later, or exits."""
        pilot.epoch += 1
        queue, rule = pilot.queue, pilot.rule
        left = pilot.started + self.model.walltime - t
        closed = pilot.draining or (pilot.jobs > 0 and (rule.timefloor == 0 or t - pilot.started > rule.timefloor))
        took = 0
        while not closed and pilot.free > 0 and left > 0 and (rule.partitionable or not pilot.active):
            position = self.fitting(queue, pilot.free)
            if position is None:
                break
            job = queue.jobs[queue.waiting[position]]
            runtime = min(job.runtime, self.model.walltime)
            if runtime > left:
                closed = True  # the next job does not fit: a fresh pilot will take it
                break
            del queue.waiting[position]
            queue.result.waits.append(t - job.submit)
            queue.running_jobs += job.cores
            pilot.jobs, pilot.active, pilot.free = pilot.jobs + 1, pilot.active + 1, pilot.free - job.cores
            pilot.busy += runtime * job.cores
            self.at(t + runtime, JOB_END, (pilot, job.cores))
            took += 1
            if rule.timefloor == 0:
                closed = True  # one job per pilot
        if took:
            pilot.tries = 0
        if pilot.active:
            if not closed and pilot.free > 0 and rule.partitionable:
                self.at(t + rule.retry, RETRY, pilot, pilot.epoch)  # free cores look again later
            return
        if closed or left <= 0:
            return self.end_pilot(t, pilot)
        pilot.tries += 1
        if pilot.tries >= (rule.first_tries if pilot.jobs == 0 else rule.tries):
            return self.end_pilot(t, pilot)
        self.at(t + rule.retry, RETRY, pilot, pilot.epoch)

    def job_end(self, t: float, obj) -> None:
        pilot, cores = obj
        queue = pilot.queue
        queue.running_jobs -= cores
        queue.result.jobs_done += 1
        pilot.active -= 1
        pilot.free += cores
        self.ask(t, pilot)

    # ------------------------------------------------------------ batch system
    def submit(self, t: float, queue: Queue, n: int) -> None:
        for _ in range(n):
            self.pilot_count += 1
            ahead = sum(1 for p in queue.pending.values() if not p.removing) if self.model.delay_per_pending else 0
            pilot = Pilot(self.pilot_count, queue, t, self.model.pilot_cores)
            queue.pending[pilot.id] = pilot
            self.at(t + self.delay() + self.model.delay_per_pending * ahead, ELIGIBLE, pilot)
        queue.result.submissions += n
        queue.result.peak_pending_pilots = max(queue.result.peak_pending_pilots, len(queue.pending))

    def remove(self, t: float, queue: Queue, n: int) -> None:
        """Ask to remove the n newest pending pilots not already being removed; it lands removal_delay later."""
        chosen = [p for _, p in sorted(queue.pending.items(), reverse=True) if not p.removing][:n]
        for pilot in chosen:
            pilot.removing = True
            if self.model.removal_delay:
                self.at(t + self.model.removal_delay, REMOVE, pilot)
            else:
                self.removal(t, pilot)

    def removal(self, t: float, pilot: Pilot) -> None:
        queue = pilot.queue
        if pilot.state != "pending":
            queue.result.removals_lost += 1  # it started first and runs
            return
        del queue.pending[pilot.id]
        pilot.state = "removed"
        queue.result.removed += 1
        queue.finished_recently.append(FinishedPilot(str(pilot.id), None, t, None, "removed"))

    def drain(self, t: float, queue: Queue, n: int) -> None:
        """Stop n running pilots from taking new work, the least busy first; an idle one exits now."""
        candidates = sorted((p for p in queue.running.values() if not p.draining and p.state == "running"), key=lambda p: (p.active, -p.id))
        for pilot in candidates[:n]:
            pilot.draining = True
            if pilot.active == 0:
                self.end_pilot(t, pilot)

    def eligible(self, t: float, pilot: Pilot) -> None:
        if pilot.state == "pending":
            self.waiting.append(pilot)
            self.start_waiting(t)

    def start_waiting(self, t: float) -> None:
        cores = self.model.pilot_cores
        while self.free >= cores and self.waiting:
            pilot = self.waiting.popleft()
            if pilot.state != "pending":
                continue  # removed while waiting
            queue = pilot.queue
            del queue.pending[pilot.id]
            self.free -= cores
            pilot.started, pilot.state = t, "running"
            queue.running[pilot.id] = pilot
            queue.started_recently.append((t, t - pilot.submitted))
            queue.result.pilots += 1
            in_hole = self.hole is not None and self.hole[0] <= t < self.hole[1]
            if self.model.start_failure and self.failures.random() < self.model.start_failure or in_hole:
                queue.result.failed += 1
                pilot.state = "failing"
                self.at(t + FAIL_AFTER, FAILED, pilot)
                continue
            self.ask(t, pilot)

    def failed(self, t: float, pilot: Pilot) -> None:
        if pilot.state == "failing":
            self.end_pilot(t, pilot)

    def end_pilot(self, t: float, pilot: Pilot) -> None:
        queue = pilot.queue
        failed = pilot.state == "failing"
        pilot.state, pilot.ended = "done", t
        pilot.epoch += 1
        del queue.running[pilot.id]
        self.free += self.model.pilot_cores
        queue.result.pilot_time += (t - pilot.started) * self.model.pilot_cores
        queue.result.busy_time += pilot.busy
        if pilot.jobs == 0 and not failed:
            queue.result.empty += 1
        queue.finished_recently.append(FinishedPilot(str(pilot.id), pilot.started, t, 1 if failed else 0,
                                                     "fault" if failed else "done"))
        self.start_waiting(t)

    # ------------------------------------------------------------ the factory
    def poll_wms(self, t: float, queue: Queue) -> None:
        queue.wms = (t, WMSQueueInfo(ready=len(queue.waiting), running=queue.running_jobs,
                                     done=queue.result.jobs_done))
        if queue.record_timeline:
            running = len(queue.running)
            pending = sum(1 for p in queue.pending.values() if not p.removing)
            queue.result.timeline.append((t, len(queue.waiting), queue.running_jobs, pending, running))
        if not self.over(t):
            self.at(self.next_poll(t), POLL_WMS, queue)

    def poll_batch(self, t: float, queue: Queue) -> None:
        while queue.started_recently and queue.started_recently[0][0] < t - RECENT:
            queue.started_recently.popleft()
        while queue.finished_recently and queue.finished_recently[0].end < t - RECENT:
            queue.finished_recently.popleft()
        pending = sum(1 for p in queue.pending.values() if not p.removing)  # a removed pilot shows as removed
        queue.batch = (t, BatchQueueInfo(pending=pending, running=len(queue.running),
                                         finished=tuple(reversed(queue.finished_recently)),
                                         queue_waits=tuple(wait for _, wait in queue.started_recently),
                                         queue_wait_starts=tuple(start for start, _ in queue.started_recently)))
        if not self.over(t):
            self.at(self.next_poll(t), POLL_BATCH, queue)

    def over(self, t: float) -> bool:
        return all(q.finished for q in self.queues) or t >= self.horizon

    def cycle(self, t: float, queue: Queue) -> None:
        if not self.over(t):
            self.at(t + self.model.cycle, CYCLE, queue)
        if queue.wms is None or queue.batch is None:
            n = 0  # no status yet
        elif queue.last_submission is not None and queue.batch[0] <= queue.last_submission:
            n = 0  # a live queue waits for a batch status newer than its last submission
        else:
            batch = queue.batch[1]
            info = SchedInfo(wms=queue.wms[1], batch=batch, factory_pilots=batch.pending + batch.running,
                             now=t, finished=list(batch.finished))
            if hasattr(queue.policy, "draining"):  # a pool that releases running pilots knows which it released
                queue.policy.draining = sum(1 for p in queue.running.values() if p.draining)
            n = queue.policy.decide(info)
            if self.limits is not None and n > 0:  # the same limits for every policy: pending, and per cycle
                n = max(0, min(n, self.limits[1], self.limits[0] - batch.pending))
            queue.result.decisions.append((t, info.wms.ready, batch.pending, batch.running, n))
            drain = getattr(queue.policy, "drain", 0)
            if drain > 0:
                self.drain(t, queue, drain)
        if n > 0:
            self.submit(t, queue, n)
        elif n < 0:
            self.remove(t, queue, -n)
        if n != 0:
            queue.last_submission = t


def replay(jobs: list[Job], model: Model, policy, timeline: bool = False, progress: bool = False,
           neighbours: list | None = None, limits: tuple[int, int] | None = None) -> Result:
    """Run one policy on one workload (``neighbours``: policies of other queues sharing the pool;
    ``limits``: (pending, per cycle) caps applied after every policy's decision, for comparing policies
    at the same limits)."""
    report = (lambda line: print(line, file=sys.stderr, flush=True)) if progress else None
    return Replay(jobs, model, policy, timeline, report, neighbours, limits).run()
