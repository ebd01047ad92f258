"""One factory queue: its thread and its cycle.

    WMS status -> batch status -> scheduler chain -> safety rules -> submit/remove -> record

The safety rules (docs/semantics.md) are applied here, after the chain, whatever the
chain says: unknown status submits nothing, no double submission, the hard
ceilings MaxPerCycle and MaxPerFactory, no submission with a failing
credential, nothing while paused.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from autopyfactory.config import QueueConfig, Section
from autopyfactory.context import FactoryContext
from autopyfactory.cycles import CycleRunner
from autopyfactory.health import FACTORY_COUNT_UNKNOWN, Health, queue_health
from autopyfactory.info import BatchQueueInfo, FinishedPilot, WMSQueueInfo
from autopyfactory.interfaces import BatchSubmitPlugin, SchedInfo, SchedulerPlugin, SubmitResult
from autopyfactory.ledger import Ledger, pending_ceiling, with_ledger_floor
from autopyfactory.peers import alive_peers, alive_window
from autopyfactory.records import AdminAction, CycleRecord, SchedStep, share_unchanged
from autopyfactory.timefmt import HOLD_HORIZON, iso

if TYPE_CHECKING:
    from autopyfactory.plugins.registry import PluginRegistry
    from autopyfactory.status import StatusPoller, StatusService

log = logging.getLogger(__name__)

KEEP_RECORDS = 30  # in memory per queue (the queue page's table); older cycles are in the store
RESTART_FIRST = 1.0  # a dead queue thread is restarted after 1, 2, 4, ... seconds
RESTART_MAX = 300.0
FINISHED_WINDOW = 3600.0  # finished pilots handed to the scheduler chain: at least the last hour
# A cycle that saw and decided what the one before it did is logged at DEBUG, with an INFO line at
# least this often per queue (its record is in the store and on the queue page either way)
QUIET_LINE_EVERY = 600.0


class FactoryPilots:
    """Factory-wide pilot count for MaxPerFactory, with submissions not yet seen by status.

    A queue reserves its pilots before submitting, under one lock, so two
    queues deciding at the same moment cannot both take the last headroom. A
    reservation counts until a batch status taken after the submission
    returned shows the pilots themselves.
    """

    def __init__(self, maximum: int | None, lastgood: float = 1800.0):
        self.maximum = maximum
        self.lastgood = lastgood  # seconds a queue whose status is unknown counts with its last good answer
        self._lock = threading.Lock()
        self._queues: dict[str, APFQueue] = {}
        # queue -> (pilots reserved or submitted, when the submission returned; None = under way)
        self._in_flight: dict[str, tuple[int, float | None]] = {}
        # The count is asked by every queue in every cycle; summing over every
        # queue each time made a status interval cost O(queues²) (2,000 queues:
        # 4 million lookups). It only changes with a batch answer, an in-flight
        # change or an answer growing older than maxage, so it is kept until then.
        self._pollers: dict[int, list] = {}  # id -> [batch poller, queues using it]
        self._version = 0  # bumped by every change of queues or in-flight pilots
        # version, snapshots, count, why it is unknown, valid until
        self._cache: tuple[int, tuple, int | None, str, float] | None = None

    def add(self, queue: APFQueue) -> None:
        with self._lock:
            self._queues[queue.name] = queue
            users = self._pollers.setdefault(id(queue.batch_poller), [queue.batch_poller, 0])
            users[1] += 1
            self._version += 1

    def remove(self, name: str) -> None:
        with self._lock:
            queue = self._queues.pop(name, None)
            self._in_flight.pop(name, None)
            self._version += 1
            if queue is not None:
                users = self._pollers.get(id(queue.batch_poller))
                if users is not None:
                    users[1] -= 1
                    if users[1] <= 0:
                        del self._pollers[id(queue.batch_poller)]

    def _count(self) -> tuple[int | None, str]:
        snapshots = tuple(poller.snapshot for poller, _ in self._pollers.values())
        now = time.time()
        cache = self._cache
        if (cache is not None and cache[0] == self._version and now < cache[4] and len(cache[1]) == len(snapshots)
                and all(a is b for a, b in zip(cache[1], snapshots, strict=True))):
            return cache[2], cache[3]
        total: int | None = 0
        why = ""
        valid_until = min((snapshot.taken + poller.maxage for (poller, _), snapshot
                           in zip(self._pollers.values(), snapshots, strict=True) if snapshot is not None), default=now)
        for name, queue in self._queues.items():
            batch, taken, _ = queue.batch_status()
            if batch is not None:
                queue.last_good_batch = (batch, taken)
            else:  # unknown: its last good answer counts for a bounded age, then the factory-wide count is unknown
                last = queue.last_good_batch
                if last is None or now - last[1] > self.lastgood:
                    since = "never known" if last is None else f"unknown for {now - last[1]:.0f}s"
                    total, why = None, (f"batch status of queue {name} {since} (its last good answer counts for "
                                        f"maxperfactory.lastgood = {self.lastgood:g}s)")
                    break
                batch, taken = last
                valid_until = min(valid_until, taken + self.lastgood)
            # the queue's ledger is a floor (invariant 8): pilots it submitted and has not seen end
            total += max(batch.pending + batch.running, queue.ledger.outstanding(now))
            count, returned = self._in_flight.get(name, (0, None))
            if count and (returned is None or taken is None or taken <= returned):
                total += count
        self._cache = (self._version, snapshots, total, why, valid_until)
        return total, why

    def count(self) -> int | None:
        """pending + running of every queue; None if any queue's batch status is unknown for too long."""
        with self._lock:
            return self._count()[0]

    def unknown(self) -> str:
        """Why the factory-wide count is unknown ("" when it is known)."""
        with self._lock:
            return self._count()[1]

    def reserve(self, name: str, n: int) -> tuple[int, str]:
        """How many of n pilots this queue may submit under maxperfactory.maximum."""
        with self._lock:
            if self.maximum is None:
                self._in_flight[name] = (n, None)
                self._version += 1
                return n, ""
            total, why = self._count()
            if total is None:
                return 0, f"{FACTORY_COUNT_UNKNOWN} ({why}): submitting 0"
            allowed, why = factory_ceiling(n, self.maximum, total)
            self._in_flight[name] = (allowed, None)
            self._version += 1
            return allowed, why

    def settle(self, name: str, submitted: int) -> None:
        """The submission returned with ``submitted`` pilots."""
        with self._lock:
            self._in_flight[name] = (submitted, time.time())
            self._version += 1


@dataclass
class Pause:
    """An operator's hold on a queue: ``paused`` stops submission, ``drained`` also removes idle pilots."""

    mode: str  # "paused" or "drained"
    reason: str = ""
    until: float | None = None  # epoch seconds; None = until resumed
    since: float = field(default_factory=time.time)

    def describe(self) -> str:
        """``drained until 2026-12-02T06:00:00Z: site downtime`` for logs and the audit trail."""
        until = f" until {iso(self.until) or repr(self.until)}" if self.until else ""
        return f"{self.mode}{until}" + (f": {self.reason}" if self.reason else "")

    @classmethod
    def restored(cls, row: dict, now: float) -> tuple[Pause, str | None]:
        """The pause a store row holds, and what was wrong with the row (None: nothing).

        A damaged row never stops the queue from starting, nor silently ends an
        operator's hold: the queue stays held (``paused`` when the mode is
        unreadable, until resumed when the end is), and the problem is said."""
        problems = []
        mode = row.get("mode")
        if mode not in ("paused", "drained"):
            problems.append(f"mode {str(mode)[:40]!r} is neither paused nor drained")
            mode = "paused"
        until = _number(row.get("until"))
        if row.get("until") is not None and (until is None or until > now + HOLD_HORIZON + 86400):
            problems.append(f"end {str(row.get('until'))[:40]!r} is not a time within "
                            f"{HOLD_HORIZON / 86400:.0f} days")
            until = None
        since = _number(row.get("since"))
        if since is None or since > now + 86400:
            problems.append(f"start {str(row.get('since'))[:40]!r} is not a time")
            since = now
        reason = str(row.get("reason") or "")[:500]
        if problems:
            reason = f"{reason} [restored from a damaged store row: {'; '.join(problems)}]".strip()
        return cls(mode, reason, until, since), "; ".join(problems) or None


def _number(value: object) -> float | None:
    """``value`` as a finite number of seconds >= 0, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


class APFQueue:
    """A queue section of queues.conf brought to life."""

    config_error: str | None = None  # set by a reload whose section of this queue is invalid (it runs on)

    def __init__(
        self,
        config: QueueConfig,
        context: FactoryContext,
        status: StatusService,
        pilots: FactoryPilots,
        runner: CycleRunner,
        listeners: list[Callable[[APFQueue, CycleRecord], None]] | None = None,
    ):
        self.name = config.name
        self.config = config
        self.runner = runner  # the factory's cycle workers (autopyfactory/cycles.py)
        self.context = context
        self.pilots = pilots
        self.listeners = listeners if listeners is not None else []
        registry = context.registry
        self.schedulers = build_chain(registry, config, context.config.factory)
        self.submitter: BatchSubmitPlugin = registry.get("batchsubmit", config.values["batchsubmitplugin"])(
            config, context
        )
        self.wms_poller: StatusPoller = status.poller_for("wmsstatus", config)
        self.batch_poller: StatusPoller = status.poller_for("batchstatus", config)
        # what each poller is asked for on behalf of this queue
        self.wms_key = self.wms_poller.plugin.queue_key(config)
        self.batch_key = self.batch_poller.plugin.queue_key(config)
        self.records: deque[CycleRecord] = deque(maxlen=KEEP_RECORDS)
        self._records_lock = threading.Lock()
        self.cycles = 0
        self.submitted_total = 0
        self.errors_total = 0
        self.last_submission: float | None = None
        self.pause: Pause | None = None  # set by apf pause / apf drain
        self._pause_lock = threading.RLock()  # the cycle and the factory's main loop both end a pause at --until
        self.fault_backoff: str | None = None  # why submission is throttled to probe pilots, when it is
        self._probes = 1  # probe pilots a cycle in fault backoff may submit (probe_pilots)
        # "thread": the queue's turn on the cycle workers (it was a thread of its own; the operator's word stays)
        self.started = False  # the thread was started (health: a started queue whose thread died is critical)
        self.ran_its_cycles = False  # the thread ended after --cycles N, as asked
        self.died: str | None = None  # why the thread died, until the factory restarts it
        self.restart_due: float | None = None  # when the factory restarts the dead thread
        self.restarts = 0  # threads restarted after dying
        self._deaths_in_row = 0  # deaths without a completed cycle between them: the restart backoff
        self._last_cycle: int | None = None  # --cycles N: the cycle count at which the queue ends
        self._stop = threading.Event()
        self._submitting = threading.Lock()  # held while the submit plugin runs; stop() waits for it
        self._running = False  # on the cycle workers: waiting for its next step or in one
        self._left = threading.Event()  # set when it left them (stopped, died, ran its cycles); join() waits for it
        self._left.set()
        self._first_status_until: float | None = None  # while set: waiting for the first answers that include it
        self.store = context.store  # persistence store (autopyfactory/persistence.py) or None
        # finished pilots of the last FINISHED_WINDOW (or Throttle's interval), kept with a store: _finished
        self._history: dict[str, FinishedPilot] | None = None  # jobid -> pilot; None = not read from the store yet
        self._history_batch: BatchQueueInfo | None = None  # the batch answer last added to it
        self._history_sorted: list[FinishedPilot] | None = None  # its pilots latest first; None = to sort again
        self._history_lock = threading.Lock()  # the queue's cycle and the web server's read it
        self._ended_seen: BatchQueueInfo | None = None  # the batch answer whose finished pilots the ledger saw
        self._last_info_line = float("-inf")  # when this queue's cycle was last logged at INFO
        # the batch answer the latest cycle planned from (None while unknown): monitors read each pilot's state in it
        self.batch_seen: BatchQueueInfo | None = None
        self._dicts: dict[type, tuple[object, dict]] = {}  # status answer -> its dict in the latest record
        # pilots submitted and not seen end (safety invariant 8, autopyfactory/ledger.py)
        self.ledger = Ledger(float(config.values.get("apfqueue.ledger.maxage", 6 * 3600.0)))
        # (batch answer, when taken) of the latest good batch status: MaxPerFactory counts it while unknown
        self.last_good_batch: tuple[BatchQueueInfo, float | None] | None = None
        if self.store is not None:
            self._restore()
        pilots.add(self)

    def _restore(self) -> None:
        """Go on from the stored state: counters, last submission, latest cycle records."""
        state = self.store.queue_state(self.name)
        self.cycles = state.cycles
        self.submitted_total = state.submitted_total
        self.errors_total = state.errors_total
        self.last_submission = state.last_submission
        try:
            self.records.extend(self.store.recent_cycles(self.name, KEEP_RECORDS))
        except Exception as exc:  # a damaged row: the queue starts without its history, never not at all
            log.error("queue %s: cannot restore its latest cycles from the store (%s: %s); starting without them",
                      self.name, type(exc).__name__, exc)
        good = next((r for r in self.records if isinstance(r.batch, dict)), None)
        try:  # MaxPerFactory counts it while this queue's status is unknown
            if good is not None:
                self.last_good_batch = (BatchQueueInfo(pending=int(good.batch.get("pending") or 0),
                                                       running=int(good.batch.get("running") or 0)),
                                        float(good.batch_time or good.started))
        except (TypeError, ValueError):
            self.last_good_batch = None
        now = time.time()
        since = now - self.ledger.maxage
        window = now - self._finished_window
        finished = self.store.finished(self.name, min(since, window), limit=1_000_000)  # one read for both
        self._history = {p.jobid: p for p in finished if p.end >= window}
        self.ledger.restore(self.store.submissions(self.name, since), (p.jobid for p in finished if p.end >= since))
        row = self.store.queue_pause(self.name)
        if row is not None:
            now = time.time()
            self.pause, problem = Pause.restored(row, now)
            if problem is None:
                log.warning("queue %s: still %s (kept across the restart)", self.name, self.pause.describe())
            else:
                detail = f"stored pause damaged ({problem}): kept as {self.pause.describe()}"
                log.error("queue %s: %s; resume or pause it again to replace it", self.name, detail)
                self.store.record_pause(self.name, asdict(self.pause))  # the damaged row set aside
                self.store.record_admin(AdminAction(now, "system", self.pause.mode, self.name, "ok", 0, detail))
        if state.cycles:
            log.info("queue %s: restored %d cycles, %d submitted, %d errors, last submission %s",
                     self.name, state.cycles, state.submitted_total, state.errors_total,
                     iso(state.last_submission)
                     if state.last_submission else "never")

    # ------------------------------------------------------------ thread
    @property
    def paused(self) -> bool:
        """Submission stopped by the operator (paused or drained)."""
        return self.pause is not None

    @paused.setter
    def paused(self, value: bool) -> None:
        if value and self.pause is None:
            self.set_pause(Pause("paused"))
        elif not value:
            self.set_pause(None)

    def set_pause(self, pause: Pause | None) -> None:
        """Pause or drain the queue (``pause``), or resume it (None); kept in the store across restarts."""
        with self._pause_lock:
            self.pause = pause
            if self.store is not None:
                self.store.record_pause(self.name, None if pause is None else asdict(pause))

    def end_pause_when_due(self, now: float | None = None) -> bool:
        """Resume a pause whose ``until`` has come (logged, and audited as the system); True if it ended."""
        now = time.time() if now is None else now
        with self._pause_lock:
            pause = self.pause
            if pause is None or pause.until is None or pause.until > now:
                return False
            self.set_pause(None)
        detail = f"{pause.describe()} ended by itself"
        log.warning("queue %s: %s, submitting again", self.name, detail)
        if self.store is not None:
            self.store.record_admin(AdminAction(now, "system", "resume", self.name, "ok", 0, detail))
        return True

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def health(self, now: float | None = None) -> Health:
        return queue_health(self, now)

    def start(self, cycles: int | None = None) -> None:
        self.started = True
        self._last_cycle = None if cycles is None else self.cycles + cycles  # restored cycles do not count
        self._put_on_workers()

    def _put_on_workers(self) -> None:
        self._running = True
        self._left.clear()
        self._first_status_until = time.time() + self.sleep
        self.runner.schedule(self, time.time())

    def restart(self) -> None:
        """Put a queue whose thread died back on the cycle workers (counters and records kept)."""
        self.restarts += 1
        log.warning("queue %s: restarting its thread (restart %d; it died: %s)", self.name, self.restarts, self.died)
        self.died = self.restart_due = None
        self._put_on_workers()

    def stop(self) -> None:
        self._stop.set()
        self.runner.wake(self)  # a queue waiting for its next cycle leaves now, not then

    @property
    def submit_timeout(self) -> float:
        """How long one submission can take: the submit plugin's own ``timeout`` (60 s when it has none)."""
        return float(getattr(self.submitter, "timeout", None) or 60.0)

    def wait_submission(self, timeout: float) -> bool:
        """After stop(): wait until no submission is under way; True when none is (none can start now)."""
        if not self._submitting.acquire(timeout=max(0.0, timeout)):
            return False
        self._submitting.release()
        return True

    def join(self, timeout: float | None = None) -> None:
        """Wait until the queue has left the cycle workers (after stop(), its cycle under way ends first)."""
        self._left.wait(timeout)

    @property
    def alive(self) -> bool:
        return self._running

    @property
    def sleep(self) -> float:
        return float(self.config.values["apfqueue.sleep"])

    def step(self) -> float | None:
        """What a cycle worker runs: one cycle; when the next step is due, or None when the queue leaves.

        If anything kills the step, the queue's thread has died: it leaves, and the factory
        puts it back later (``restart_due``)."""
        try:
            return self._step()
        except BaseException as exc:  # noqa: BLE001 - a thread that dies is reported and restarted, never lost
            self._deaths_in_row += 1
            delay = min(RESTART_MAX, RESTART_FIRST * 2.0 ** min(self._deaths_in_row - 1, 16))
            self.died = f"{type(exc).__name__}: {exc}"[:300]
            self.restart_due = time.time() + delay
            log.critical("queue %s: its thread died (%s); restarting it in %.0fs", self.name, self.died, delay,
                         exc_info=True)
            return self._leave()

    def _step(self) -> float | None:
        if self._stop.is_set():
            return self._leave()
        first = self._first_status_until is not None
        if first and not self._first_status_ready():
            return self._first_status_until  # or sooner: the answer it waits for wakes it
        self._first_status_until = None
        record = self.run_cycle()
        self._deaths_in_row = 0
        if self._last_cycle is not None and self.cycles >= self._last_cycle:
            self.ran_its_cycles = True
            return self._leave()
        if self._stop.is_set():
            return self._leave()
        wait = self.sleep * spread(self.name) if first else self.sleep
        if record.submitted:
            self._prepare(time.time() + wait)
        return time.time() + wait

    def _leave(self) -> None:
        self._running = False
        self._left.set()
        return None

    def _prepare(self, when: float) -> None:
        """The submit plugin readies the next cycle's submission (e.g. the day's log directory) outside the cycle.

        Only after a cycle that submitted: a submitting queue is likely to submit again, and a
        queue that has not submitted (most of them, most of the time) pays nothing; its first
        submission does the same work itself. Readying every queue before its first cycle cost
        a fifth of the factory's first-cycle CPU at 500 queues; with the Slurm launcher shipped,
        the log directory alone still adds 37 % to it (docs/performance.md)."""
        try:
            self.submitter.prepare(when)
        except Exception as exc:  # the cycle's submit does the same work again and reports a failure
            log.debug("queue %s: preparing the next submission failed: %s", self.name, exc)

    def _first_status_ready(self) -> bool:
        """A queue plans from real numbers: its first cycle waits (bounded by ``apfqueue.sleep``)
        for the first answers that include it; False: the poller's next answer wakes it.

        An answer taken before this queue joined its poller does not mention it;
        a first cycle on such an answer would only say "unknown" and the
        queue's first pilots would wait a whole ``apfqueue.sleep``.
        """
        while time.time() < self._first_status_until:
            for poller, key in ((self.wms_poller, self.wms_key), (self.batch_poller, self.batch_key)):
                snapshot = poller.snapshot
                if snapshot is None or key not in snapshot.data:
                    if poller.call_on_answer(snapshot, self._wake):
                        return False
                    break  # an answer came meanwhile: look again
            else:
                return True
        return True

    def _wake(self) -> None:
        self.runner.wake(self)

    # ------------------------------------------------------------ status
    def batch_status(self) -> tuple[BatchQueueInfo | None, float | None, str]:
        return self.batch_poller.get(self.batch_key)

    # ------------------------------------------------------------ the cycle
    def run_cycle(self) -> CycleRecord:
        record = CycleRecord(queue=self.name, number=self.cycles + 1)
        try:
            self._cycle(record)
        except Exception as exc:  # one queue's failure never stops another
            record.errors.append(f"error: {type(exc).__name__}: {exc}")
            log.exception("queue %s: cycle %d failed", self.name, record.number)
        finally:
            record.duration = time.time() - record.started
            if record.errors:
                self.errors_total += 1
            self.submitted_total += record.submitted
            self.cycles += 1
            with self._records_lock:
                previous = self.records[0] if self.records else None
                share_unchanged(record, previous)
                self.records.appendleft(record)
            level = self._line_level(record, previous)
            if log.isEnabledFor(level):  # a repeated cycle's line is not even made unless DEBUG is on
                log.log(level, "queue %s cycle %d: %s | %s", self.name, record.number, describe_inputs(record),
                        record.message or "nothing to do")
            for listener in self.listeners:
                try:
                    listener(self, record)
                except Exception:
                    log.exception("queue %s: cycle listener failed", self.name)
        return record

    def _line_level(self, record: CycleRecord, previous: CycleRecord | None) -> int:
        """INFO for a cycle that did something or saw or decided something new, and at least every
        ``QUIET_LINE_EVERY`` seconds, and the last of a ``--cycles`` run; DEBUG for one that repeats
        the last (an idle queue's line every cycle was a third of a cycle's CPU at 2,000 queues, and
        11 million lines a day)."""
        last = self._last_cycle is not None and record.number >= self._last_cycle
        repeats = (previous is not None and not last and not record.submitted and not record.removed and not record.errors
                   # share_unchanged made the parts equal to the previous record's *be* them
                   and record.wms is previous.wms and record.batch is previous.batch
                   and record.steps is previous.steps and record.holds is previous.holds
                   and record.decided == previous.decided)
        if repeats and record.started - self._last_info_line < QUIET_LINE_EVERY:
            return logging.DEBUG
        self._last_info_line = record.started
        return logging.INFO

    def _cycle(self, record: CycleRecord) -> None:
        self.end_pause_when_due(record.started)
        wms, _, wms_why = self.wms_poller.get(self.wms_key)
        batch, batch_taken, batch_why = self.batch_status()
        record.wms = self._as_dict(wms)
        record.batch = self._as_dict(batch)
        record.batch_time = batch_taken
        self.batch_seen = batch
        if batch is not None:  # invariant 8: the factory's own ledger is a floor under the batch answer
            if batch is not self._ended_seen:  # once per answer: the same answer ends nothing new
                self.ledger.ended(p.jobid for p in batch.finished)
                self._ended_seen = batch
            batch, floor = with_ledger_floor(batch, self.ledger.outstanding(record.started))
            if floor:
                record.holds.append(floor)
        info = SchedInfo(
            wms=wms,
            batch=batch,
            factory_pilots=self.pilots.count(),
            now=record.started,
            finished=self._finished(batch, record.started),
            alive_peers=self._alive_peers(batch, record.started),
        )
        if self.config.values.get("apfqueue.faultbackoff", True):  # off: the attribute is left alone
            self.fault_backoff = fault_backoff(info.finished, self.config, active=self.fault_backoff is not None)
            self._probes = probe_pilots(info.finished)
        n = run_chain(self.schedulers, info, record.steps)
        record.decided = n
        if info.factory_pilots is None and self.pilots.maximum is not None and wms is not None and batch is not None and (
                n > 0 or any("factory-wide pilot count unknown" in step.message for step in record.steps)):
            record.holds.append(f"{FACTORY_COUNT_UNKNOWN} ({self.pilots.unknown()}): submitting 0")
            n = 0
        n = self._apply_safety(n, record, wms is None and wms_why, batch is None and batch_why, batch_taken,
                               batch.pending if batch is not None else 0)

        if n > 0:
            n, why = self.pilots.reserve(self.name, n)
            if why:
                record.holds.append(why)
        if n > 0:
            with self._submitting:
                if self._stop.is_set():  # a stopped instance never submits: its successor may be running
                    self.pilots.settle(self.name, 0)
                    record.holds.append("queue stopping: submitting 0")
                    return
                try:
                    result = self.submitter.submit(n)
                except Exception:
                    self._submitted_maybe(n)
                    raise
                # recorded first (and before a successor instance can read it): nothing that can
                # fail comes between the batch system's answer and this
                self.pilots.settle(self.name, result.count)
                self.ledger.submitted(result.ids)
                if result.count > 0:  # from the batch system's answer on (invariant 2)
                    self.last_submission = record.submitted_at = result.accepted_at or time.time()
            record.submitted = result.count
            self._take(result, record)
            if result.count > 0:
                self._stored_submission("submit", result)
                self.batch_poller.wake()
        elif n < 0:
            result = self.submitter.remove(-n)
            self._take(result, record)
            record.removed = result.count
            self.ledger.ended(result.ids)
            if result.count > 0:
                self.last_submission = record.submitted_at = time.time()
                self._stored_submission("remove", result)
                self.batch_poller.wake()

    def _as_dict(self, info: WMSQueueInfo | BatchQueueInfo | None) -> dict | None:
        """``info.to_dict()`` for the cycle record; the previous record's own dict when the answer is the same."""
        if info is None:
            return None
        cached = self._dicts.get(type(info))
        if cached is not None and cached[0] is info:
            return cached[1]
        data = info.to_dict()
        self._dicts[type(info)] = (info, data)
        return data

    def _submitted_maybe(self, n: int) -> None:
        """The submit plugin raised: the batch system may have taken some of the ``n`` pilots before.

        Counted as a submission with an unknown outcome: up to ``n`` pilots count for
        MaxPerFactory, and the queue plans again only from a batch status newer than now
        (invariant 2), which shows whatever was accepted.
        """
        self.pilots.settle(self.name, n)
        self.last_submission = time.time()
        if self.store is not None:
            self.store.record_submission(self.name, self.last_submission, "submit", 0, [])
        self.batch_poller.wake()

    def _alive_peers(self, batch: BatchQueueInfo | None, now: float) -> int:
        """Other factories serving this WMS queue that submitted within their last peers.alivecycles cycles."""
        if batch is None or not batch.peers:
            return 0
        window = alive_window(self.context.config.get("peers.alivecycles"), self.sleep)
        return len(alive_peers(batch.peers, self.context.factory_id, now, window))

    def _stored_submission(self, kind: str, result: SubmitResult) -> None:
        # written at once, not at the end of the cycle: a kill -9 right now must not forget it
        if self.store is not None and self.last_submission is not None:
            self.store.record_submission(self.name, self.last_submission, kind, result.count, list(result.ids))

    def _finished(self, batch: BatchQueueInfo | None, now: float) -> list[FinishedPilot]:
        """Finished pilots, latest first: the batch system's memory, and the store's when there is one.

        With a store the queue keeps its own window of them in memory: read from the store
        once (what ended before a restart), then added to from each new batch answer (written
        to the store once per answer, not once per cycle). A cycle reads nothing from disk.
        """
        current = batch.finished if batch is not None else ()
        if self.store is None or not self.store.usable:
            return sorted(current, key=lambda p: -p.end)
        cutoff = now - self._finished_window
        with self._history_lock:
            if self._history is None:  # the store was not usable when the queue started
                self._history = {p.jobid: p for p in self.store.finished(self.name, cutoff)}
            if batch is not None and batch is not self._history_batch:
                self._history_batch = batch
                history = self._history
                new = [p for p in current if p.jobid not in history]  # the first report of a pilot stays
                if new:
                    self.store.add_finished(self.name, new)
                    history.update((p.jobid, p) for p in new)
                    self._history_sorted = None
            latest = self._history_sorted
            if latest is None or (latest and latest[-1].end < cutoff):
                self._history = {j: p for j, p in self._history.items() if p.end >= cutoff}
                latest = self._history_sorted = sorted(self._history.values(), key=lambda p: -p.end)
            return list(latest)

    @property
    def _finished_window(self) -> float:
        return max(FINISHED_WINDOW, float(self.config.values.get("sched.throttle.interval") or 0))

    def finished_pilots(self, now: float | None = None) -> list[FinishedPilot]:
        """Pilots that ended recently, latest first (the store's and the batch system's memory)."""
        batch, _, _ = self.batch_status()
        return self._finished(batch, time.time() if now is None else now)

    def finished_counts(self, since: float) -> dict[str, int] | None:
        """done/fault/empty of pilots that ended since ``since`` (at most the last hour); None if unknown."""
        batch, _, _ = self.batch_status()
        if self.store is None or not self.store.usable:  # no history: the batch system's own memory
            return None if batch is None else {"done": batch.done, "fault": batch.fault, "empty": batch.empty}
        if self.store.failing_since is not None:  # history not written: unknown, not wrong (health says why)
            return None
        counts = {"done": 0, "fault": 0, "empty": 0}
        for pilot in self._finished(batch, time.time()):
            if pilot.end < since:
                break  # latest first
            if pilot.state in counts:
                counts[pilot.state] += 1
        return counts

    def _take(self, result: SubmitResult, record: CycleRecord) -> None:
        record.ids.extend(result.ids)
        if result.message:
            record.holds.append(result.message)
        if result.error:
            record.errors.append(f"{self.submitter.name} failed: {result.error}")

    def _apply_safety(
        self, n: int, record: CycleRecord, wms_unknown: str | bool, batch_unknown: str | bool,
        batch_taken: float | None, pending: int,
    ) -> int:
        def hold(reason: str) -> int:
            record.holds.append(reason)
            return 0

        # unknown status is always said, with the reason, even when the chain said 0
        if wms_unknown:
            return hold(f"WMS status unknown ({wms_unknown}): submitting 0")
        if batch_unknown:
            return hold(f"batch status unknown ({batch_unknown}): submitting 0")
        if self.pause is not None:
            n = self._drain(record)
        if n == 0:
            return 0
        if self.last_submission is not None and (batch_taken is None or batch_taken <= self.last_submission):
            self.batch_poller.wake()
            return hold("waiting for batch status newer than the last submission: submitting 0")
        if n > 0:
            profile = self.submitter.credential_profile
            if profile:
                state = self.context.credential(profile)
                if state is None or not state.ok:
                    why = state.message if state is not None else "not checked yet"
                    return hold(f"credential {profile} not usable ({why}): submitting 0")
            n, why = cycle_ceiling(n, self.config)
            if why:
                record.holds.append(why)
            n, why = pending_ceiling(n, pending, self.config.values.get("apfqueue.maxpending"))
            if why:
                record.holds.append(why)
            if self.fault_backoff and n > self._probes:
                record.holds.append(f"{self.fault_backoff}: {n} capped to {self._probes}")
                n = self._probes
        return n

    def _drain(self, record: CycleRecord) -> int:
        """While paused: 0; while drained: minus the pilots that have not started (removed, as scale-down does)."""
        pause = self.pause
        pending = (record.batch or {}).get("pending") or 0
        if pause.mode == "drained" and pending > 0:
            record.holds.append(f"queue drained: removing {pending} pilot(s) that have not started")
            return -pending
        record.holds.append(f"queue {pause.mode}: submitting 0")
        return 0

    # ------------------------------------------------------------ views
    def recent_records(self, count: int | None = None) -> list[CycleRecord]:
        """A copy of the latest cycle records, newest first (safe while the queue cycles)."""
        with self._records_lock:
            records = list(self.records)
        return records if count is None else records[:count]

    @property
    def last_record(self) -> CycleRecord | None:
        records = self.recent_records(1)
        return records[0] if records else None

    def summary(self, records: list[CycleRecord] | None = None) -> dict:
        """The queue as the status page and the API show it (``records``: a copy to describe).

        Keys and value styles follow the JSON API's conventions (autopyfactory/web/api.py).
        """
        batch, _, _ = self.batch_status()
        wms, _, _ = self.wms_poller.get(self.config.wmsqueue)
        records = self.recent_records(1) if records is None else records
        last = records[0] if records else None
        finished = self.finished_counts(time.time() - 3600)
        health = self.health()
        pause = self.pause
        return {
            "name": self.name,
            "enabled": True,
            "health": health.level,
            "health_reason": health.reason,
            "wmsqueue": self.config.wmsqueue,
            "batchqueue": self.config.batchqueue,
            "pending": batch.pending if batch else None,
            "running": batch.running if batch else None,
            "exiting": batch.exiting if batch else None,
            "held": batch.held if batch else None,
            "done_1h": finished["done"] if finished else None,
            "fault_1h": finished["fault"] if finished else None,
            "empty_1h": finished["empty"] if finished else None,
            "wms": wms.to_dict() if isinstance(wms, WMSQueueInfo) else None,
            "paused": self.paused,
            "pause": None if pause is None else {"mode": pause.mode, "reason": pause.reason,
                                                 "since": iso(pause.since), "until": iso(pause.until)},
            "fault_backoff": self.fault_backoff,
            "cycle_count": self.cycles,
            "submitted_total": self.submitted_total,
            "errors_total": self.errors_total,
            "last_message": last.message if last else "",
            "last_cycle": last.started_iso if last else None,
            "last_submission": iso(self.last_submission),
        }


def spread(name: str) -> float:
    """Fraction (0.5 to 1) of ``apfqueue.sleep`` a queue waits after its first cycle.

    Queues started together with the same sleep would otherwise cycle in step
    for ever: 2,000 threads waking at the same moment, every interval, fight
    for the interpreter lock (thousands of context switches per interval).
    The first wait is shortened, never lengthened, by a fraction fixed by the
    queue's name, so the cycles spread over the interval and no queue waits
    longer than ``apfqueue.sleep``.
    """
    return 0.5 + 0.5 * (zlib.crc32(name.encode()) / 2**32)


def build_chain(registry: PluginRegistry, queue: QueueConfig, factory: Section) -> list[SchedulerPlugin]:
    """The scheduler chain of ``queue``: one plugin per name of its ``schedplugin`` list, in order.

    ``registry`` is the one the config was validated with (``FactoryConfig.registry``),
    ``factory`` the [Factory] section. Raises what a plugin's constructor raises.
    Hand the result to ``run_chain``.
    """
    return [registry.get("sched", name)(queue, factory) for name in queue.values["schedplugin"]]


def run_chain(schedulers: list[SchedulerPlugin], info: SchedInfo, steps: list[SchedStep]) -> int:
    """Run a scheduler chain (from ``build_chain``) on ``info``: it starts at 0, each plugin
    gets the number the previous one returned; the last one's number is returned.

    Appends one ``SchedStep`` per plugin to ``steps`` (also when a later plugin raises).
    No safety rule is applied here: the cycle applies them after the chain.
    """
    n = 0
    for plugin in schedulers:
        n, message = plugin.calc(n, info)
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"scheduler plugin {plugin.name} returned {n!r}, not an integer")
        steps.append(SchedStep(plugin.name, n, message))
    return n


def cycle_ceiling(n: int, config: QueueConfig) -> tuple[int, str]:
    """Hard ceilings on one submission, whatever the chain said: ``sched.maxpercycle.maximum``
    when set, and always ``apfqueue.maxpercycle`` (default 1000)."""
    maximum = config.values.get("sched.maxpercycle.maximum")
    if n > 0 and maximum is not None and n > maximum:
        return maximum, f"MaxPerCycle ceiling: {n} capped to {maximum}"
    default = config.values.get("apfqueue.maxpercycle")
    if n > 0 and default is not None and n > default:
        return default, f"apfqueue.maxpercycle ceiling: {n} capped to {default}"
    return n, ""


def fault_backoff(finished: list[FinishedPilot], config: QueueConfig, active: bool = False) -> str | None:
    """Why the queue is in fault backoff (safety invariant 7), or None.

    ``finished``: pilots that ended, latest first; ``active``: the queue is in
    backoff now. Judged on the latest ``apfqueue.faultbackoff.pilots`` that
    ended done or fault (removed ones, also those killed from outside, do not
    count), at least ``.minimum`` of them. With hysteresis, so a queue whose
    pilots fault half the time does not flap: it enters when more than
    ``.fraction`` of them faulted and leaves when ``.leavefraction`` or fewer did.
    """
    values = config.values
    if not values.get("apfqueue.faultbackoff", True):
        return None
    ended = [p for p in finished if p.state in ("done", "fault")][: int(values.get("apfqueue.faultbackoff.pilots", 10))]
    if len(ended) < int(values.get("apfqueue.faultbackoff.minimum", 3)):
        return None
    faults = sum(1 for p in ended if p.state == "fault")
    enter = float(values.get("apfqueue.faultbackoff.fraction", 0.5))
    leave = min(enter, float(values.get("apfqueue.faultbackoff.leavefraction", 0.2)))
    if faults <= (leave if active else enter) * len(ended):
        return None
    return (f"fault backoff: {faults} of the last {len(ended)} pilots faulted, probe pilots only "
            f"(normal again at {leave:g} or less)")


def probe_pilots(finished: list[FinishedPilot]) -> int:
    """Pilots a queue in fault backoff may submit in one cycle: one, and one more for each of the
    latest ended pilots that ended well in a row (a fixed site comes back in a few cycles)."""
    streak = 0
    for pilot in finished:
        if pilot.state == "fault":
            break
        if pilot.state == "done":
            streak += 1
    return 1 + streak


def factory_ceiling(n: int, maximum: int | None, total: int) -> tuple[int, str]:
    """Hard ceiling ``[Factory] maxperfactory.maximum`` on a submission, given the factory-wide count."""
    if maximum is None or n <= 0:
        return n, ""
    allowed = max(0, min(n, maximum - total))
    if allowed < n:
        return allowed, f"MaxPerFactory ceiling: {n} capped to {allowed} ({maximum} max - {total} in the factory)"
    return n, ""


def describe_inputs(record: CycleRecord) -> str:
    """``wms ready=5 | batch pending=2 running=3`` (or unknown) for the cycle log line."""
    wms = "unknown" if record.wms is None else f"ready={record.wms['ready']} status={record.wms['status']}"
    if record.batch is None:
        batch = "unknown"
    else:
        batch = " ".join(f"{k}={record.batch[k]}" for k in ("pending", "running", "done", "fault"))
    return f"wms {wms} | batch {batch}"
