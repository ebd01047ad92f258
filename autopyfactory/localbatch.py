"""A tiny batch system inside the factory: pilots as local processes.

It is what the ``Local`` batch plugins talk to, so the embedded default shows
the whole loop with nothing installed. Pilots wait as *pending* until their
queue has a free slot (``batchsubmit.local.maxrunning``), run in their own
process group with stdout/stderr in the queue's log directory, and end as
*done* (exit 0), *fault*, or *removed* (ended from outside, or when the
factory stops: a stop ends every pilot and accounts for it). Finished pilots are remembered for ten minutes, as
the small record a batch status answer gives (``FinishedPilot``), not as the pilot.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from autopyfactory.info import (
    MAX_LISTED_PILOTS,
    BatchQueueInfo,
    FinishedPilot,
    LivePilot,
    ended_state,
    killed_from_outside,
)

log = logging.getLogger(__name__)

# Like a real batch system (Slurm forgets after MinJobAge, 300 s), it forgets finished pilots soon:
# each queue has written them to the factory's store long before, and its history comes from there.
# Memory is the pilots of the last ten minutes, not of the last hour (650 pilots a minute in the soak).
REMEMBER_FINISHED = 600.0
STOP_GRACE = 10.0  # seconds running pilots get to end after SIGTERM when the factory stops


@dataclass
class LocalPilot:
    jobid: str
    queue: str
    factory: str
    argv: list[str]
    env: dict[str, str]
    out: str
    err: str
    maxrunning: int
    submitted: float = field(default_factory=time.time)
    state: str = "pending"  # pending | running | done | fault | removed
    start: float | None = None
    end: float | None = None
    exitcode: int | None = None
    process: subprocess.Popen | None = None


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Signal a pilot's process group (each pilot starts a session of its own)."""
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class LocalBatch:
    def __init__(self, tick: float = 0.2):
        self.tick = tick
        self._pilots: dict[str, LocalPilot] = {}  # pending and running
        self._finished: dict[str, deque[FinishedPilot]] = {}  # per queue, in the order they ended
        self._lock = threading.Lock()
        self._clusters = itertools.count(int(time.time()) % 1_000_000 * 10)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="localbatch", daemon=True)
        self._thread.start()

    def submit(
        self,
        queue: str,
        factory: str,
        argv: list[str],
        count: int,
        logdir: str,
        maxrunning: int,
        environment: Callable[[str, str], dict[str, str]],
    ) -> list[str]:
        """Queue ``count`` pilots; returns their ids ``<cluster>.<proc>``."""
        cluster = next(self._clusters)
        pilots = []
        for proc in range(count):
            jobid = f"{cluster}.{proc}"
            out = os.path.join(logdir, f"{jobid}.out")
            pilots.append(LocalPilot(jobid, queue, factory, list(argv), environment(jobid, out), out,
                                     os.path.join(logdir, f"{jobid}.err"), maxrunning))
        with self._lock:
            for pilot in pilots:
                self._pilots[pilot.jobid] = pilot
        try:
            self._dispatch()  # queued already: a failure to start one now is that pilot's fault, not the submission's
        except Exception:
            log.exception("local batch: starting pilots of %s", queue)
        return [p.jobid for p in pilots]

    def remove_pending(self, queue: str, count: int) -> list[str]:
        """Remove up to ``count`` pilots of ``queue`` that have not started."""
        removed = []
        with self._lock:
            for pilot in sorted(self._pilots.values(), key=lambda p: -p.submitted):
                if len(removed) >= count:
                    break
                if pilot.queue == queue and pilot.state == "pending":
                    self._ended(pilot, "removed", None, time.time())
                    removed.append(pilot.jobid)
        return removed

    def pids(self, queue: str) -> list[int]:
        """Process ids of the running pilots of ``queue``."""
        with self._lock:
            return [p.process.pid for p in self._pilots.values()
                    if p.queue == queue and p.state == "running" and p.process is not None]

    def states(self, queue: str) -> list[str]:
        """The state of every pilot of ``queue`` this batch system knows (waiting, running and remembered)."""
        with self._lock:
            return ([p.state for p in self._pilots.values() if p.queue == queue]
                    + [p.state for p in self._finished.get(queue, ())])

    def pilots(self, queue: str, factory: str) -> list[LivePilot]:
        """The pending and running pilots of ``queue``, oldest first."""
        with self._lock:
            live = [p for p in self._pilots.values() if p.queue == queue and p.factory == factory]
        return [LivePilot(p.jobid, p.state, p.submitted, p.start)
                for p in sorted(live, key=lambda p: p.submitted)[:MAX_LISTED_PILOTS]]

    def status(self, queues: Collection[str], factory: str) -> dict[str, BatchQueueInfo]:
        now = time.time()
        counts = {q: {"pending": 0, "running": 0, "done": 0, "fault": 0} for q in queues}
        finished: dict[str, list[FinishedPilot]] = {q: [] for q in queues}
        active: dict[str, dict[str, str]] = {q: {} for q in queues}
        with self._lock:
            for pilot in self._pilots.values():
                if pilot.queue in counts and pilot.factory == factory:
                    counts[pilot.queue][pilot.state] += 1
                    if pilot.state == "running":
                        active[pilot.queue][pilot.jobid] = "running"
            for queue in queues:
                for pilot in self._finished.get(queue, ()):
                    if pilot.factory == factory and now - pilot.end <= REMEMBER_FINISHED:
                        if pilot.state in ("done", "fault"):
                            counts[queue][pilot.state] += 1
                        finished[queue].append(pilot)
        return {q: BatchQueueInfo(finished=tuple(finished[q]), active=active[q], **counts[q]) for q in queues}

    def close(self, grace: float = STOP_GRACE) -> None:
        """The factory stops, and this batch system with it: every pilot ends and is accounted for.

        Pilots still pending never start: they end as *removed*. Running ones are
        ended too (SIGTERM to their process group, SIGKILL after ``grace``
        seconds): left running, they would be orphans no one counts after a
        restart. They end as *removed* (ended from outside, not a fault), each
        with a line in its .err file, and one warning per kind says how many per
        queue. Their records stay in ``status()`` so the factory can store them.
        """
        self._stop.set()
        self._thread.join(2)
        now = time.time()
        with self._lock:
            dropped = [p for p in self._pilots.values() if p.state == "pending"]
            for pilot in dropped:
                self._ended(pilot, "removed", None, now)
            running = [p for p in self._pilots.values() if p.state == "running" and p.process is not None]
        ended = self._end_running(running, grace)
        self._report(dropped, "still pending never start, removed",
                     "never started: the factory stopped while this pilot waited for a slot (removed)")
        self._report(ended, "still running ended (removed)",
                     "ended: the factory stopped, and its Local batch system with it (removed)")

    def _end_running(self, running: list[LocalPilot], grace: float) -> list[LocalPilot]:
        for pilot in running:
            _signal_group(pilot.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for pilot in running:
            try:
                pilot.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(pilot.process, signal.SIGKILL)
                pilot.process.wait()
        with self._lock:
            for pilot in running:
                code = pilot.process.returncode
                self._ended(pilot, "removed", 128 - code if code < 0 else code, time.time())
        return running

    def _report(self, pilots: list[LocalPilot], what: str, note: str) -> None:
        per_queue: dict[str, int] = {}
        for pilot in pilots:
            per_queue[pilot.queue] = per_queue.get(pilot.queue, 0) + 1
            try:
                with open(pilot.err, "a") as err:
                    err.write(note + "\n")
            except OSError:
                pass
        if pilots:
            log.warning("factory stopping: %d local pilot(s) %s (%s)", len(pilots), what,
                        ", ".join(f"{queue}: {n}" for queue, n in sorted(per_queue.items())))

    # -- the dispatcher
    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self._dispatch()
            except Exception:
                log.exception("local batch dispatcher")

    def _dispatch(self) -> None:
        now = time.time()
        with self._lock:
            running: dict[str, int] = {}
            for pilot in list(self._pilots.values()):
                if pilot.state == "running":
                    code = pilot.process.poll() if pilot.process else -1
                    if code is None:
                        running[pilot.queue] = running.get(pilot.queue, 0) + 1
                    else:
                        code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says
                        state = "removed" if killed_from_outside(code) else ended_state(code)
                        self._ended(pilot, state, code, now)
            for pilot in sorted(self._pilots.values(), key=lambda p: p.submitted):
                if pilot.state == "pending" and running.get(pilot.queue, 0) < pilot.maxrunning:
                    self._start(pilot)
                    running[pilot.queue] = running.get(pilot.queue, 0) + 1
            for queue, ended in list(self._finished.items()):
                while ended and now - ended[0].end > REMEMBER_FINISHED:
                    ended.popleft()
                if not ended:
                    del self._finished[queue]

    def _ended(self, pilot: LocalPilot, state: str, exitcode: int | None, now: float) -> None:
        """The pilot is over: only its record stays (called with the lock held)."""
        pilot.state, pilot.end, pilot.exitcode, pilot.process = state, now, exitcode, None
        self._pilots.pop(pilot.jobid, None)
        self._finished.setdefault(pilot.queue, deque()).append(
            FinishedPilot(pilot.jobid, pilot.start, now, exitcode, state, pilot.factory))

    def _start(self, pilot: LocalPilot) -> None:
        pilot.start = time.time()
        try:
            with open(pilot.out, "ab") as out, open(pilot.err, "ab") as err:
                pilot.process = subprocess.Popen(
                    pilot.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                    env={**os.environ, **pilot.env}, start_new_session=True, close_fds=True,
                )
            pilot.state = "running"
            pilot.env = {}  # not needed once started
        except OSError as exc:
            self._ended(pilot, "fault", 127, time.time())
            log.warning("local batch: cannot start pilot %s of %s: %s", pilot.jobid, pilot.queue, exc)
            try:
                with open(pilot.err, "a") as err:
                    err.write(f"cannot start pilot {pilot.argv[0]}: {exc}\n")
            except OSError:
                pass  # the disk is full or gone: the log line above says it
