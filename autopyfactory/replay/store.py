"""A workload and a batch system's behaviour from the factory's own SQLite store (``apf replay --store``).

What the store holds (autopyfactory/persistence.py) and what the replay takes from it, for one queue
and the cycles since ``since``:

- **Work arrivals.** Every cycle record has the WMS status the cycle saw (ready, running, done).
  Between two cycles, the work that arrived is the growth of ready + running plus the work that
  ended meanwhile; the work that ended is the growth of ``done`` when ``done`` never goes down in
  the period (a count of finished work, as the Local WMS plugin reports), otherwise the pilots
  that ended in the interval with exit code 0 (PanDA's ``finished`` is a window, not a count).
  The ready work of the first cycle arrives at 0; the arrivals of an interval are spread evenly
  over it. An estimate: work that arrived and ended between two cycles is not seen.
- **Run times.** Each arrival gets a run time drawn (seeded) from the run times of the queue's
  pilots that ended in the period (end - start; state done).
- **Queue waits.** start - submission time of each pilot, matching the submissions' batch ids
  with the pilots' ids: the model draws every queue delay from them.
- **Slots.** The most pilots seen running at once, unless ``--slots`` says otherwise.

Read-only (the running factory's file is not touched); the same bounds as a trace apply.
"""

from __future__ import annotations

import datetime
import json
import math
import random
import re
import sqlite3
import time
from dataclasses import dataclass

from autopyfactory.replay.model import MAX_DELAY
from autopyfactory.replay.traces import MAX_JOBS, MAX_RUNTIME, MAX_SPAN, Job, TraceError

MAX_ROWS = 5_000_000  # cycle records or pilots read from one store


class StoreError(TraceError):
    """A store that cannot be replayed; the message names the file and why."""


@dataclass
class StoreWorkload:
    queue: str
    jobs: list[Job]
    queue_waits: tuple[float, ...]
    peak_running: int
    start: float  # epoch seconds of the first cycle used
    end: float
    cycles: int
    completions_from: str  # "done counter" | "pilots"

    def describe(self) -> str:
        return (f"queue {self.queue}: {self.cycles} cycles from {iso(self.start)} to {iso(self.end)}, "
                f"{len(self.jobs)} jobs (estimated; ended work from the {self.completions_from}), "
                f"{len(self.queue_waits)} queue waits, at most {self.peak_running} pilots running")


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_since(text: str, now: float | None = None) -> float:
    """``7d``, ``12h``, ``30m``, ``90s`` ago, or an ISO 8601 time, or epoch seconds -> epoch seconds."""
    now = time.time() if now is None else now
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        if seconds > 10 * 366 * 86400:
            raise StoreError(f"--since {text!r}: at most 10 years back")
        return now - seconds
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise StoreError(f"--since {text!r}: expected 7d, 12h, 30m, 90s, an ISO 8601 time or epoch "
                             "seconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return parsed.timestamp()
    if not math.isfinite(value) or not 0 <= value <= now + 366 * 86400:
        raise StoreError(f"--since {text!r}: not a time")
    return value


def read_store(path: str, queue: str | None = None, since: float = 0.0, seed: int = 1,
               max_jobs: int = MAX_JOBS) -> StoreWorkload:
    """The workload and queue waits of ``queue`` (the only one when None) since ``since`` (epoch seconds)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: not a readable factory store: {exc}") from None
    try:
        return _read(conn, path, queue, since, seed, max_jobs)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: not a factory store this version can read: {exc}") from None
    finally:
        conn.close()


def _read(conn: sqlite3.Connection, path: str, queue: str | None, since: float, seed: int,
          max_jobs: int) -> StoreWorkload:
    queues = [row[0] for row in conn.execute("SELECT DISTINCT queue FROM cycles ORDER BY queue")]
    if not queues:
        raise StoreError(f"{path}: no cycles recorded")
    if queue is None:
        if len(queues) > 1:
            raise StoreError(f"{path}: several queues ({', '.join(queues)}): choose one with --queue")
        queue = queues[0]
    elif queue not in queues:
        raise StoreError(f"{path}: no cycles of queue {queue!r} (it has {', '.join(queues)})")

    points = []  # (time, ready, running, done, pilots running)
    rows = conn.execute("SELECT started, record FROM cycles WHERE queue = ? AND started >= ? ORDER BY started "
                        "LIMIT ?", (queue, since, MAX_ROWS + 1))
    for started, record in rows:
        if len(points) >= MAX_ROWS:
            raise StoreError(f"{path}: more than {MAX_ROWS:,} cycles of {queue} since then: use a later --since")
        try:
            data = json.loads(record)
            wms = data.get("wms")
            if not wms or not math.isfinite(started):
                continue  # WMS status unknown in that cycle
            batch = data.get("batch") or {}
            points.append((float(started), int(wms["ready"]), int(wms["running"]), int(wms.get("done") or 0),
                           int(batch.get("running") or 0)))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # a record this version cannot read: set aside
    if len(points) < 2:
        raise StoreError(f"{path}: fewer than two cycles of {queue} with a known WMS status since {iso(since)}")
    start, end = points[0][0], points[-1][0]
    if end - start > MAX_SPAN:
        raise StoreError(f"{path}: {queue}'s cycles span {(end - start) / 86400:.0f} days; at most "
                         f"{MAX_SPAN / 86400:.0f} (use a later --since)")

    pilots = conn.execute("SELECT jobid, start, end, state, exitcode FROM pilots WHERE queue = ? AND end >= ? "
                          "AND end <= ? LIMIT ?", (queue, start, end + 3600, MAX_ROWS)).fetchall()
    runtimes = [e - s for _, s, e, state, _ in pilots
                if state == "done" and s is not None and e is not None and 0 <= e - s <= MAX_RUNTIME]
    if not runtimes:
        raise StoreError(f"{path}: no pilot of {queue} ended in the period: no run times to replay")
    submitted = {}
    for when, ids in conn.execute("SELECT time, ids FROM submissions WHERE queue = ? AND kind = 'submit' "
                                  "AND time >= ? AND time <= ? LIMIT ?", (queue, start - 86400, end, MAX_ROWS)):
        try:
            for jobid in json.loads(ids):
                submitted[str(jobid)] = when
        except (ValueError, TypeError):
            continue
    waits = tuple(min(MAX_DELAY, max(0.0, s - submitted[str(jobid)])) for jobid, s, _, _, _ in pilots
                  if s is not None and str(jobid) in submitted)

    done_counts = [p[3] for p in points]
    monotone = all(b >= a for a, b in zip(done_counts, done_counts[1:], strict=False)) and done_counts[-1] > 0
    ended = sorted(e for _, s, e, state, code in pilots if state == "done" and code == 0 and e is not None)
    rng = random.Random(seed)
    jobs: list[Job] = []

    def arrive(count: int, t0: float, t1: float) -> None:
        if len(jobs) + count > max_jobs:
            raise StoreError(f"{path}: more than {max_jobs} jobs estimated (the limit; --max-jobs raises it)")
        for k in range(count):
            jobs.append(Job(t0 - start + (t1 - t0) * (k + 1) / (count + 1), rng.choice(runtimes)))

    arrive(points[0][1], start, start)
    position = 0
    for (t0, r0, u0, d0, _), (t1, r1, u1, d1, _) in zip(points, points[1:], strict=False):
        if monotone:
            completed = d1 - d0
        else:
            completed = 0
            while position < len(ended) and ended[position] <= t1:
                completed += ended[position] > t0
                position += 1
        arrive(max(0, (r1 + u1) - (r0 + u0) + completed), t0, t1)
    if not jobs:
        raise StoreError(f"{path}: no work arrived for {queue} in the period")
    jobs.sort(key=lambda job: job.submit)
    return StoreWorkload(queue, jobs, waits, max(1, max(p[4] for p in points)), start, end, len(points),
                         "done counter" if monotone else "pilots")
