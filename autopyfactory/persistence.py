"""The factory's memory across restarts: an embedded SQLite store.

What it keeps (``[Factory] persistence.dbpath``, default ``apf.sqlite`` beside
``baseLogDir``; rows older than ``persistence.keepdays`` are pruned in the
background):

- every cycle record of every queue (inputs, scheduler steps, messages,
  submitted count, errors, duration), with the batch pending/running numbers
  the status page plots (:meth:`Store.pilot_series`);
- every submission and removal (queue, batch ids, time, count);
- every pilot's terminal state as the batch status reported it (done/fault,
  start, end, exit code): done/fault over the last hour and Throttle's
  run times come from here, so they survive a restart;
- credential checks;
- every call of the admin API, refused ones included (the audit trail), and
  the pauses that ended by themselves at their ``--until`` (client ``system``);
- every queue's pause or drain (``apf pause``/``apf drain``) until it is resumed;
- per queue counters (cycles, submitted, errors, last submission), restored
  when a queue starts so the no-double-submission rule and the counters go
  on from where the previous process stopped, even after ``kill -9``.

One connection, serialised by one lock; WAL mode so a reader never waits for
a checkpoint. The schema version is SQLite's ``user_version``; start-up
applies the missing steps of :data:`MIGRATIONS`. A file that is not a
readable database (corrupt, truncated, from a newer version) is logged, moved
aside as ``<path>.corrupt-<time>`` and replaced by a fresh one: the factory
keeps running without its history rather than not at all. The store never
raises into the caller: a failed write is logged and counted (``errors``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from autopyfactory.info import CredentialStatus, FinishedPilot
from autopyfactory.records import AdminAction, CycleRecord, SchedStep

if TYPE_CHECKING:
    from autopyfactory.queue import APFQueue

log = logging.getLogger(__name__)

DAY = 86400.0

# Each step brings a database from version i to i + 1; never edit a released step, add one.
MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE cycles (
        id INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        number INTEGER NOT NULL,
        started REAL NOT NULL,
        duration REAL NOT NULL,
        pending INTEGER,            -- batch status the cycle saw; NULL = unknown
        running INTEGER,
        decided INTEGER NOT NULL,
        submitted INTEGER NOT NULL,
        removed INTEGER NOT NULL,
        errors INTEGER NOT NULL,    -- number of error messages
        message TEXT NOT NULL,
        record TEXT NOT NULL        -- the whole CycleRecord as JSON
    );
    CREATE INDEX cycles_queue_started ON cycles (queue, started);
    CREATE INDEX cycles_started ON cycles (started);
    CREATE TABLE submissions (
        id INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        time REAL NOT NULL,
        kind TEXT NOT NULL,         -- submit | remove
        count INTEGER NOT NULL,
        ids TEXT NOT NULL           -- JSON list of batch system ids
    );
    CREATE INDEX submissions_queue_time ON submissions (queue, time);
    CREATE TABLE pilots (
        queue TEXT NOT NULL,
        jobid TEXT NOT NULL,
        factory TEXT NOT NULL,
        state TEXT NOT NULL,        -- done | fault | removed
        start REAL,
        end REAL NOT NULL,
        exitcode INTEGER,
        PRIMARY KEY (queue, jobid)
    );
    CREATE INDEX pilots_queue_end ON pilots (queue, end);
    CREATE TABLE credentials (
        id INTEGER PRIMARY KEY,
        profile TEXT NOT NULL,
        time REAL NOT NULL,
        ok INTEGER NOT NULL,
        seconds_left REAL,
        message TEXT NOT NULL
    );
    CREATE INDEX credentials_time ON credentials (time);
    CREATE TABLE queue_state (
        queue TEXT PRIMARY KEY,
        cycles INTEGER NOT NULL DEFAULT 0,
        submitted_total INTEGER NOT NULL DEFAULT 0,
        errors_total INTEGER NOT NULL DEFAULT 0,
        last_submission REAL,
        updated REAL NOT NULL
    );
    """,
    # 2: pruning pilots by end time alone, whatever the queue
    """
    CREATE INDEX pilots_end ON pilots (end);
    CREATE INDEX submissions_time ON submissions (time);
    """,
    # 3: the admin API's audit trail
    """
    CREATE TABLE admin_audit (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        client TEXT NOT NULL,       -- address of the HTTP client
        action TEXT NOT NULL,       -- reload | pause | resume | loglevel | config | log | audit | stop
        target TEXT,                -- the queue, level or line count acted on; NULL = none
        result TEXT NOT NULL,       -- ok | refused | failed
        status INTEGER NOT NULL,    -- the HTTP status answered
        detail TEXT NOT NULL
    );
    CREATE INDEX admin_audit_time ON admin_audit (time);
    """,
    # 4: operators' pauses and drains, so they outlive a restart (never pruned: a downtime may be long)
    """
    CREATE TABLE queue_pause (
        queue TEXT PRIMARY KEY,
        mode TEXT NOT NULL,         -- paused | drained
        reason TEXT NOT NULL,
        since REAL NOT NULL,
        until REAL                  -- NULL = until resumed
    );
    """,
    # 5: the whole factory's counts every SAMPLE_SECONDS, so its history over days reads a few thousand rows
    """
    CREATE TABLE factory_history (
        time REAL PRIMARY KEY,
        pending INTEGER,            -- summed over the queues' latest cycles; NULL = no queue knew
        running INTEGER,
        activated INTEGER,
        submitted INTEGER NOT NULL, -- pilots since the previous sample
        done INTEGER NOT NULL,      -- pilots that ended since the previous sample
        fault INTEGER NOT NULL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

# tables pruned by age: (table, time column, key column)
PRUNED = [("cycles", "started", "id"), ("submissions", "time", "id"), ("factory_history", "time", "rowid"),
          ("pilots", "end", "rowid"), ("credentials", "time", "id"), ("admin_audit", "time", "id")]
FLUSH_INTERVAL = 15.0  # seconds between two writes of the buffered cycles and pilots (persistence.flushinterval)
PRUNE_CHUNK = 5000  # rows per transaction, so cycles are never blocked for long
SAMPLE_SECONDS = 60.0  # the whole factory's counts are written this often (factory_history)
SAMPLE_LATEST = 3600.0  # a queue's latest cycle counts in a sample while it is younger than this
AUDIT_MAX_ROWS = 100000  # admin actions kept at most (a flood of refused calls cannot fill the disk)


class StoreUnusable(Exception):
    """The database file cannot be used as it is."""


@dataclass(frozen=True)
class QueueState:
    cycles: int = 0
    submitted_total: int = 0
    errors_total: int = 0
    last_submission: float | None = None


class Store:
    """The SQLite file and everything read from or written to it."""

    def __init__(self, path: str, keepdays: float = 14, prune_interval: float = 3600.0,
                 flush_interval: float = FLUSH_INTERVAL, readonly: bool = False):
        """``readonly``: another process's store, only read (``apf`` without the web server): never
        created, migrated, written nor moved aside; StoreUnusable says why it cannot be read."""
        self.path = path
        self.readonly = readonly
        self.keepdays = keepdays
        self.prune_interval = prune_interval
        self.flush_interval = flush_interval
        self.flushes = 0  # transactions that wrote the buffered cycles and pilots (benchmarks count them)
        self.errors = 0  # failed operations since start
        self.last_error: str | None = None
        self.failing_since: float | None = None  # writes fail (read-only, disk full...) since then; None = fine
        self.moved_aside: list[str] = []  # corrupt files set aside since start
        self.damaged: dict[str, int] = {}  # table -> rows read but set aside (not times, not numbers) since start
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._seen: dict[str, set[str]] = {}  # per queue, the finished pilots of the last answer written
        # the factory's sample in the making: each queue's latest (time, pending, running, activated), and the
        # pilots submitted and ended since the last sample
        self._latest: dict[str, tuple[float, int | None, int | None, int | None]] = {}
        self._since_sample = {"submitted": 0, "done": 0, "fault": 0}
        self._sampled = 0.0  # when the last sample was taken (cycle time): the first cycle takes one
        self._sample_lock = threading.Lock()
        # What cycles write, kept until the next flush (one transaction for every queue):
        # cycle records, finished pilots, and each queue's latest counters.
        self._buffer_lock = threading.Lock()  # never held during I/O: a cycle never waits for a flush
        self._cycles: list[CycleRecord] = []
        self._pilots: list[tuple[str, list[FinishedPilot]]] = []
        self._states: dict[str, tuple] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if readonly:
            self._conn = self._connect_readonly()
        else:
            self._open()

    # ------------------------------------------------------------ opening
    def _open(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        try:
            self._conn = self._connect()
        except (sqlite3.DatabaseError, StoreUnusable) as exc:
            if not os.access(directory, os.W_OK):  # read-only or not ours: nothing is wrong with the file
                self._conn = None
                self._failed(f"open ({directory} is not writable: read-only file system or permissions)", exc)
                return
            log.error("persistence: %s is not usable (%s): moving it aside and starting a fresh one",
                      self.path, exc)
            self._move_aside()
            self._conn = self._connect()
        log.info("persistence: %s (schema %d, keep %g days)", self.path, SCHEMA_VERSION, self.keepdays)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
        try:
            fresh = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
            if fresh:
                # must precede the first table: lets pruning give pages back to the file system
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("persistence: %s: journal mode %s, not WAL", self.path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a killed process loses nothing
            if not fresh:
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise StoreUnusable(f"integrity check: {check}")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        if not os.path.isfile(self.path):
            raise StoreUnusable(f"{self.path} does not exist (has the factory run with this persistence.dbpath?)")
        # A store no process has open (no -wal file) is read as immutable: SQLite then makes no -wal or
        # -shm file, which, owned by this reader (root), would keep the daemon's user from writing.
        live = os.path.exists(self.path + "-wal")
        uri = f"file:{quote(os.path.abspath(self.path))}?mode=ro" + ("" if live else "&immutable=1")
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=10.0, check_same_thread=False, isolation_level=None)
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise StoreUnusable(f"cannot read {self.path}: {exc}") from None
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreUnusable(f"{self.path}: schema version {version} is newer than this APF's {SCHEMA_VERSION}")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreUnusable(f"schema version {version} is newer than this APF's {SCHEMA_VERSION}")
        for number in range(version, SCHEMA_VERSION):
            try:
                conn.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1};"
                                   " COMMIT;")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            log.info("persistence: %s migrated to schema %d", self.path, number + 1)

    def _move_aside(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = f"{self.path}.corrupt-{stamp}"
        number = 1
        while os.path.exists(target):
            number += 1
            target = f"{self.path}.corrupt-{stamp}-{number}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, target + suffix)
        self.moved_aside.append(target)
        log.error("persistence: unusable database moved to %s", target)

    def _recover(self, exc: Exception) -> None:
        """The file went bad while running: set it aside and carry on with a fresh one (not another's)."""
        if self.readonly:
            return
        log.error("persistence: %s failed while running (%s): moving it aside", self.path, exc)
        try:
            if self._conn is not None:
                self._conn.close()
        except sqlite3.Error:
            pass
        self._conn = None
        self._seen.clear()
        try:
            self._move_aside()
            self._conn = self._connect()
        except Exception as again:
            log.error("persistence: cannot start a fresh %s (%s): running without history", self.path, again)
            self._conn = None

    # ------------------------------------------------------------ plumbing
    def _run(self, what: str, work, default: Any = None) -> Any:
        """Run ``work(conn)`` under the lock; failures are logged, never raised."""
        with self._lock:
            if self._conn is None:
                return default
            try:
                return work(self._conn)
            except sqlite3.OperationalError as exc:  # busy, disk full, I/O: keep the file
                self._failed(what, exc)
            except sqlite3.DatabaseError as exc:  # malformed, not a database
                self._failed(what, exc)
                self._recover(exc)
            except Exception as exc:
                self._failed(what, exc)
            return default

    def _pilot_rows(self, rows: Iterable[tuple]) -> list[FinishedPilot]:
        """Pilot rows as FinishedPilot; a damaged row (an end that is no time, an unknown state) is set aside."""
        pilots = []
        for jobid, start, end, exitcode, state, factory in rows:
            when, began = stored_time(end), stored_time(start)
            if when is None or (start is not None and began is None) or state not in ("done", "fault", "removed") \
                    or not isinstance(jobid, str) or not (exitcode is None or type(exitcode) is int):
                self._set_aside("pilots", (jobid, start, end, exitcode, state), ValueError("not a pilot"))
                continue
            pilots.append(FinishedPilot(jobid, began, when, exitcode, state, str(factory)))
        return pilots

    def _set_aside(self, table: str, row: object, why: Exception) -> None:
        """A damaged row is not used, never a reason to fail: said once per table, counted after."""
        self.damaged[table] = self.damaged.get(table, 0) + 1
        if self.damaged[table] == 1:
            log.error("persistence: a damaged row of table %s is set aside (not used): %.200r (%s); "
                      "further ones are only counted", table, row, why)

    def _read(self, what: str, work, default: Any = None) -> Any:
        """``_run`` for a read: the buffered writes go first, so a reader sees everything written before."""
        self.flush()
        return self._run(what, work, default)

    def _failed(self, what: str, exc: Exception) -> None:
        """Count every failure; warn once when the store starts failing, not at every write after."""
        self.errors += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        if self.failing_since is None:
            self.failing_since = time.time()
            log.warning("persistence: %s (warned once; the store shows as a factory problem until a write "
                        "succeeds)", self.last_error)
        else:
            log.debug("persistence: %s", self.last_error)

    @property
    def problem(self) -> str | None:
        """Why the store is not keeping history now (None when it is)."""
        if self._conn is None:
            return f"persistence store {self.path} is not usable, running without history: {self.last_error}"
        if self.failing_since is not None:
            return f"persistence store {self.path} cannot be written ({self.errors} failed writes): {self.last_error}"
        return None

    def _write(self, conn: sqlite3.Connection, statements: Iterable[tuple[str, tuple]]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                conn.execute(sql, args)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._written()

    def _written(self) -> None:
        if self.failing_since is not None:
            log.warning("persistence: %s is written again (after %d failed writes)", self.path, self.errors)
            self.failing_since = None

    @property
    def usable(self) -> bool:
        return self._conn is not None

    # ------------------------------------------------------------ writing
    def record_cycle(self, record: CycleRecord, state: QueueState | None = None) -> None:
        """One finished cycle; also moves the queue's counters. Kept until the next ``flush``.

        ``state``: the queue's own counters after the cycle; written as they are, never
        lowering a stored one (so a fresh file after a corrupt one starts from the right
        totals, and a submission written at once since is not undone).
        """
        with self._buffer_lock:
            self._cycles.append(record)
            if state is not None:
                self._states[record.queue] = (state.cycles, state.submitted_total, state.errors_total,
                                              state.last_submission)
            else:
                cycles, submitted, errors, last = self._states.get(record.queue, (0, 0, 0, None))
                self._states[record.queue] = (max(cycles, record.number), submitted,
                                              errors + (1 if record.errors else 0), last)

    def record_submission(self, queue: str, when: float, kind: str, count: int, ids: list[str]) -> None:
        """Pilots submitted (``kind`` submit) or removed; written at once, before the cycle ends."""
        added = count if kind == "submit" else 0
        self._run("record submission", lambda conn: self._write(conn, [
            ("INSERT INTO submissions (queue, time, kind, count, ids) VALUES (?,?,?,?,?)",
             (queue, when, kind, count, json.dumps(list(ids)))),
            ("INSERT INTO queue_state (queue, submitted_total, last_submission, updated) VALUES (?,?,?,?)"
             " ON CONFLICT(queue) DO UPDATE SET submitted_total = submitted_total + excluded.submitted_total,"
             " last_submission = max(coalesce(last_submission, 0), excluded.last_submission),"
             " updated = excluded.updated",
             (queue, added, when, time.time())),
        ]))

    def record_finished(self, queue: str, pilots: Iterable[FinishedPilot]) -> int:
        """Terminal states seen in a batch status answer; a pilot written from the previous answer is skipped.

        Only the last answer's ids are kept: a batch system reports a finished pilot until it
        forgets it, so what is not in this answer will not come back (and if it does,
        ``INSERT OR IGNORE`` keeps one row). Memory stays the size of one answer.
        Returns how many are new; they are written at the next ``flush``.
        """
        pilots = list(pilots)
        with self._buffer_lock:
            seen = self._seen.get(queue, set())
            new = [p for p in pilots if p.jobid not in seen]
            self._seen[queue] = {p.jobid for p in pilots}
        self.add_finished(queue, new)
        return len(new)

    def add_finished(self, queue: str, pilots: list[FinishedPilot]) -> None:
        """Pilots known to be new (a queue keeps its own window of them): written at the next ``flush``."""
        if pilots:
            with self._buffer_lock:
                self._pilots.append((queue, pilots))  # the pilots themselves: no copy until the flush

    def _samples(self, cycles: list[CycleRecord], pilots: list[tuple[str, list[FinishedPilot]]]) -> list[tuple]:
        """The factory's samples (``factory_history`` rows) due with these cycles and ended pilots, taken in
        the order things happened (cycle start, pilot end): one every SAMPLE_SECONDS, each summing every
        queue's latest cycle and counting the pilots submitted and ended since the one before."""
        events = sorted([(r.started, 0, r) for r in cycles] + [(p.end, 1, p) for _, new in pilots for p in new],
                        key=lambda event: event[:2])
        rows = []
        with self._sample_lock:
            for when, kind, item in events:
                if kind == 0:
                    batch, wms = item.batch or {}, item.wms or {}
                    self._latest[item.queue] = (when, batch.get("pending"), batch.get("running"), wms.get("ready"))
                    self._since_sample["submitted"] += item.submitted
                elif item.state in ("done", "fault"):
                    self._since_sample[item.state] += 1
                if when - self._sampled < SAMPLE_SECONDS:
                    continue
                self._latest = {q: v for q, v in self._latest.items() if when - v[0] <= SAMPLE_LATEST}
                latest = self._latest.values()
                sums = [None if all(v[i] is None for v in latest) else sum(v[i] or 0 for v in latest)
                        for i in (1, 2, 3)]
                counts, self._since_sample = self._since_sample, {"submitted": 0, "done": 0, "fault": 0}
                self._sampled = when
                rows.append((when, *sums, counts["submitted"], counts["done"], counts["fault"]))
        return rows

    def flush(self) -> int:
        """Write the buffered cycles, pilots and counters in one transaction; returns the rows written.

        Run every ``flush_interval`` seconds by the store's thread, before every read (a
        reader sees every write made before it) and when the store stops. A failed flush
        is logged and counted like any failed write; its rows are lost (the batch
        system still reports the pilots; the cycles' messages are in the log).
        """
        with self._buffer_lock:
            cycles, self._cycles = self._cycles, []
            pilots, self._pilots = self._pilots, []
            states, self._states = self._states, {}
        if not (cycles or pilots or states):
            return 0
        def cycle_rows() -> Iterator[tuple]:  # made one at a time as SQLite takes them: no list of all
            for record in cycles:
                batch = record.batch or {}
                yield (record.queue, record.number, record.started, record.duration, batch.get("pending"),
                       batch.get("running"), record.decided, record.submitted, record.removed,
                       len(record.errors), record.message, json.dumps(record.to_dict(), default=str))

        pilot_rows = ((queue, p.jobid, p.factory, p.state, p.start, p.end, p.exitcode)
                      for queue, new in pilots for p in new)
        now = time.time()
        state_rows = [(queue, *state, now) for queue, state in states.items()]
        samples = self._samples(cycles, pilots)

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO cycles (queue, number, started, duration, pending, running, decided, submitted,"
                    " removed, errors, message, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", cycle_rows())
                conn.executemany(
                    "INSERT OR IGNORE INTO pilots (queue, jobid, factory, state, start, end, exitcode)"
                    " VALUES (?,?,?,?,?,?,?)", pilot_rows)
                # counters only grow: max() keeps a submission written at once since this cycle ended
                conn.executemany(
                    "INSERT INTO queue_state (queue, cycles, submitted_total, errors_total, last_submission, updated)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT(queue) DO UPDATE SET"
                    " cycles = max(cycles, excluded.cycles),"
                    " submitted_total = max(submitted_total, excluded.submitted_total),"
                    " errors_total = max(errors_total, excluded.errors_total),"
                    " last_submission = max(coalesce(last_submission, excluded.last_submission),"
                    " coalesce(excluded.last_submission, last_submission)),"
                    " updated = excluded.updated", state_rows)
                conn.executemany("INSERT OR REPLACE INTO factory_history (time, pending, running, activated,"
                                 " submitted, done, fault) VALUES (?,?,?,?,?,?,?)", samples)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.flushes += 1
            self._written()
            return len(cycles) + sum(len(new) for _, new in pilots) + len(state_rows) + len(samples)

        return self._run("write cycles and pilots", work, 0)

    def record_credential(self, state: CredentialStatus, when: float | None = None) -> None:
        self._run("record credential", lambda conn: self._write(conn, [
            ("INSERT INTO credentials (profile, time, ok, seconds_left, message) VALUES (?,?,?,?,?)",
             (state.profile, time.time() if when is None else when, int(state.ok), state.seconds_left,
              state.message)),
        ]))

    def record_admin(self, action: AdminAction) -> None:
        """One admin API call (also a refused one); only the newest AUDIT_MAX_ROWS are kept."""
        self._run("record admin action", lambda conn: self._write(conn, [
            ("INSERT INTO admin_audit (time, client, action, target, result, status, detail)"
             " VALUES (?,?,?,?,?,?,?)",
             (action.time, action.client, action.action, action.target, action.result, action.status,
              action.detail)),
            ("DELETE FROM admin_audit WHERE id <= last_insert_rowid() - ?", (AUDIT_MAX_ROWS,)),
        ]))

    def record_pause(self, queue: str, pause: dict | None) -> None:
        """The queue's pause (``{"mode", "reason", "since", "until"}``), or None when it was resumed."""
        if pause is None:
            statements = [("DELETE FROM queue_pause WHERE queue = ?", (queue,))]
        else:
            statements = [("INSERT OR REPLACE INTO queue_pause (queue, mode, reason, since, until) VALUES (?,?,?,?,?)",
                           (queue, pause["mode"], pause["reason"], pause["since"], pause["until"]))]
        self._run("record pause", lambda conn: self._write(conn, statements))

    # ------------------------------------------------------------ reading
    def queue_pause(self, queue: str) -> dict | None:
        """The queue's stored pause as ``record_pause`` got it, or None."""
        def work(conn: sqlite3.Connection) -> dict | None:
            row = conn.execute("SELECT mode, reason, since, until FROM queue_pause WHERE queue = ?",
                               (queue,)).fetchone()
            return None if row is None else dict(zip(("mode", "reason", "since", "until"), row, strict=True))

        return self._read("read pause", work, None)

    def queue_state(self, queue: str) -> QueueState:
        def work(conn: sqlite3.Connection) -> QueueState:
            row = conn.execute("SELECT cycles, submitted_total, errors_total, last_submission"
                               " FROM queue_state WHERE queue = ?", (queue,)).fetchone()
            return QueueState(*row) if row else QueueState()

        return self._read("read queue state", work, QueueState())

    def recent_cycles(self, queue: str, limit: int) -> list[CycleRecord]:
        """The queue's latest cycle records, newest first."""
        def work(conn: sqlite3.Connection) -> list[CycleRecord]:
            rows = conn.execute("SELECT record FROM cycles WHERE queue = ? ORDER BY started DESC, id DESC"
                                " LIMIT ?", (queue, limit)).fetchall()
            records = []
            for (text,) in rows:
                try:
                    record = record_from_dict(json.loads(text))
                    if stored_time(record.started) is None or not math.isfinite(float(record.duration)):
                        raise ValueError("start or duration is not a time")
                except (ValueError, TypeError, AttributeError) as exc:
                    self._set_aside("cycles", text[:200], exc)
                    continue
                records.append(record)
            return records

        return self._read("read cycles", work, [])

    def finished(self, queue: str, since: float, limit: int = 10000) -> list[FinishedPilot]:
        """Pilots of the queue that ended at or after ``since``, latest end first."""
        def work(conn: sqlite3.Connection) -> list[FinishedPilot]:
            rows = conn.execute("SELECT jobid, start, end, exitcode, state, factory FROM pilots"
                                " WHERE queue = ? AND end >= ? ORDER BY end DESC LIMIT ?",
                                (queue, since, limit)).fetchall()
            return self._pilot_rows(rows)

        return self._read("read finished pilots", work, [])

    def finished_page(self, queue: str, state: str, since: float, offset: int, limit: int
                      ) -> tuple[list[FinishedPilot], int]:
        """One page of the queue's pilots that ended in ``state`` at or after ``since``, latest end first,
        and how many there are in all."""
        def work(conn: sqlite3.Connection) -> tuple[list[FinishedPilot], int]:
            where = "WHERE queue = ? AND state = ? AND end >= ?"
            total = conn.execute(f"SELECT count(*) FROM pilots {where}", (queue, state, since)).fetchone()[0]
            rows = conn.execute(f"SELECT jobid, start, end, exitcode, state, factory FROM pilots {where}"
                                " ORDER BY end DESC LIMIT ? OFFSET ?", (queue, state, since, limit, offset))
            return self._pilot_rows(rows), total

        return self._read("read finished pilots", work, ([], 0))

    def submitted_times(self, queue: str, jobids: Iterable[str], since: float) -> dict[str, float]:
        """When each of ``jobids`` was submitted, for those submitted at or after ``since``."""
        wanted = set(jobids)

        def work(conn: sqlite3.Connection) -> dict[str, float]:
            found = {}
            for when, ids in conn.execute("SELECT time, ids FROM submissions WHERE queue = ? AND kind = 'submit'"
                                          " AND time >= ?", (queue, since)):
                for jobid in json.loads(ids):
                    if jobid in wanted:
                        found[jobid] = when
            return found

        return self._read("read submission times", work, {}) if wanted else {}

    def finished_counts(self, queue: str, since: float) -> dict[str, int]:
        """{"done": n, "fault": n} of the queue's pilots that ended at or after ``since``."""
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            counts = {"done": 0, "fault": 0}
            for state, count in conn.execute("SELECT state, count(*) FROM pilots WHERE queue = ? AND end >= ?"
                                             " GROUP BY state", (queue, since)):
                counts[state] = count
            return counts

        return self._read("count finished pilots", work, {"done": 0, "fault": 0})

    def submissions(self, queue: str, since: float = 0.0) -> list[dict]:
        def work(conn: sqlite3.Connection) -> list[dict]:
            rows = conn.execute("SELECT time, kind, count, ids FROM submissions WHERE queue = ? AND time >= ?"
                                " ORDER BY time", (queue, since)).fetchall()
            return [{"time": t, "kind": k, "count": c, "ids": json.loads(i)} for t, k, c, i in rows]

        return self._read("read submissions", work, [])

    def credentials(self, profile: str, since: float = 0.0) -> list[CredentialStatus]:
        def work(conn: sqlite3.Connection) -> list[CredentialStatus]:
            rows = conn.execute("SELECT ok, seconds_left, message FROM credentials WHERE profile = ?"
                                " AND time >= ? ORDER BY time", (profile, since)).fetchall()
            return [CredentialStatus(profile, bool(ok), left, message) for ok, left, message in rows]

        return self._read("read credentials", work, [])

    def last_credential(self, profile: str) -> tuple[CredentialStatus, float] | None:
        """The profile's latest check and when it was made; None if never checked."""
        def work(conn: sqlite3.Connection) -> tuple[CredentialStatus, float] | None:
            row = conn.execute("SELECT ok, seconds_left, message, time FROM credentials WHERE profile = ?"
                               " ORDER BY time DESC, id DESC LIMIT 1", (profile,)).fetchone()
            return None if row is None else (CredentialStatus(profile, bool(row[0]), row[1], row[2]), row[3])

        return self._read("read credentials", work, None)

    def admin_actions(self, limit: int = 100) -> list[AdminAction]:
        """The latest admin API calls, newest first."""
        def work(conn: sqlite3.Connection) -> list[AdminAction]:
            rows = conn.execute("SELECT time, client, action, target, result, status, detail FROM admin_audit"
                                " ORDER BY time DESC, id DESC LIMIT ?", (limit,)).fetchall()
            return [AdminAction(*row) for row in rows]

        return self._read("read admin actions", work, [])

    def pilot_series(self, queue: str, since: float, max_points: int | None = 500
                     ) -> list[tuple[float, int | None, int | None]]:
        """(cycle start, pending, running) of every cycle since ``since``, oldest first.

        ``None`` where the cycle did not know its batch status. With more than
        ``max_points`` cycles, the last cycle of each of ``max_points`` equal
        time slices is kept.
        """
        def work(conn: sqlite3.Connection) -> list[tuple[float, int | None, int | None]]:
            rows = conn.execute("SELECT started, pending, running FROM cycles WHERE queue = ? AND started >= ?"
                                " ORDER BY started", (queue, since)).fetchall()
            good = []
            for row in rows:
                if stored_time(row[0]) is None or not all(v is None or type(v) is int for v in row[1:]):
                    self._set_aside("cycles", row, ValueError("start, pending or running is not a number"))
                    continue
                good.append(tuple(row))
            return thin(good, max_points)

        return self._read("read pilot series", work, [])

    def history(self, queue: str | None, since: float, until: float, step: float) -> list[dict]:
        """A queue's (None: the whole factory's) history in buckets of ``step`` seconds from ``since`` to ``until``.

        Each bucket, oldest first, also the empty ones: ``time`` (its start), ``pending``, ``running`` and
        ``activated`` (the most that one cycle of the queue saw; for the factory, the most of its samples,
        each the sum of every queue's latest cycle; None where nothing knew), ``submitted`` (pilots),
        ``done`` and ``fault`` (pilots that ended). Aggregated here, in SQL, so that the answer's size is
        the number of buckets whatever the cycles; the factory's from ``factory_history`` (one row a minute).
        """
        count = max(1, math.ceil((until - since) / step))
        args = {"since": since, "until": until, "step": step, "queue": queue}
        if queue is not None:
            cycles_sql = ("SELECT queue, CAST((started - :since) / :step AS INTEGER) AS b, MAX(pending), MAX(running),"
                          " MAX(json_extract(record, '$.wms.ready')), SUM(submitted) FROM cycles"
                          " WHERE queue = :queue AND started >= :since AND started < :until GROUP BY b")
            pilots_sql = ("SELECT CAST((end - :since) / :step AS INTEGER) AS b, SUM(state = 'done'),"
                          " SUM(state = 'fault') FROM pilots WHERE queue = :queue AND end >= :since AND end < :until"
                          " GROUP BY b")
        else:  # the factory's samples: a few thousand rows, whatever the number of queues
            cycles_sql = ("SELECT NULL, CAST((time - :since) / :step AS INTEGER) AS b, MAX(pending), MAX(running),"
                          " MAX(activated), SUM(submitted) FROM factory_history WHERE time >= :since AND time < :until"
                          " GROUP BY b")
            pilots_sql = ("SELECT CAST((time - :since) / :step AS INTEGER) AS b, SUM(done), SUM(fault)"
                          " FROM factory_history WHERE time >= :since AND time < :until GROUP BY b")

        def work(conn: sqlite3.Connection) -> list[dict]:
            buckets = [{"time": since + i * step, "pending": None, "running": None, "activated": None,
                        "submitted": 0, "done": 0, "fault": 0} for i in range(count)]
            for _, b, pending, running, activated, submitted in conn.execute(cycles_sql, args):
                if 0 <= b < count:
                    buckets[b].update(pending=pending, running=running, submitted=submitted or 0,
                                      activated=None if activated is None else int(activated))
            for b, done, fault in conn.execute(pilots_sql, args):
                if 0 <= b < count:
                    buckets[b].update(done=done or 0, fault=fault or 0)
            return buckets

        return self._read("read history", work, [])

    # ------------------------------------------------------------ retention
    def prune(self, now: float | None = None) -> int:
        """Delete rows older than keepdays, give the space back; returns rows deleted."""
        cutoff = (time.time() if now is None else now) - self.keepdays * DAY
        self.flush()
        deleted = 0
        for table, column, key in PRUNED:
            while not self._stop.is_set() or self._thread is None:
                def chunk(conn: sqlite3.Connection, table=table, column=column, key=key) -> int:
                    cursor = conn.execute(
                        f"DELETE FROM {table} WHERE {key} IN"
                        f" (SELECT {key} FROM {table} WHERE {column} < ? LIMIT {PRUNE_CHUNK})", (cutoff,))
                    return cursor.rowcount

                count = self._run(f"prune {table}", chunk, 0)
                deleted += count
                if count < PRUNE_CHUNK:
                    break
        self._run("prune queue state",
                  lambda conn: conn.execute("DELETE FROM queue_state WHERE updated < ?", (cutoff,)))
        if deleted:
            self._run("give space back", lambda conn: conn.execute("PRAGMA incremental_vacuum").fetchall())
        self._run("checkpoint", lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        if deleted:
            log.info("persistence: pruned %d row(s) older than %g days", deleted, self.keepdays)
        return deleted

    def size(self) -> int:
        """Bytes on disk: the database and its WAL."""
        return sum(os.path.getsize(self.path + s) for s in ("", "-wal") if os.path.exists(self.path + s))

    # ------------------------------------------------------------ service
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="persistence", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        """Flush every ``flush_interval``; prune every ``prune_interval`` (the first time after a minute)."""
        next_prune = time.monotonic() + min(60.0, self.prune_interval)  # let the queues start first
        while not self._stop.wait(max(0.0, min(self.flush_interval, next_prune - time.monotonic()))):
            try:
                self.flush()
                if time.monotonic() >= next_prune:
                    self.prune()
                    next_prune = time.monotonic() + self.prune_interval
            except Exception:
                log.exception("persistence: writing or pruning failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(10)
        self.close()

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._conn is not None:
                try:
                    if not self.readonly:
                        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    self._conn.close()
                except sqlite3.Error as exc:
                    log.warning("persistence: closing %s: %s", self.path, exc)
                self._conn = None


MAX_STORED_TIME = 1e11  # about the year 5138: any later "time" in the store is damage


def stored_time(value: object) -> float | None:
    """A stored epoch time as a float, or None when it is no time (text, NaN, negative, absurdly far)."""
    if type(value) not in (int, float):
        return None
    return float(value) if 0 <= value < MAX_STORED_TIME else None


def record_from_dict(data: dict) -> CycleRecord:
    """A CycleRecord back from its stored ``to_dict()`` form."""
    fields = {k: v for k, v in data.items() if k in CycleRecord.__dataclass_fields__}
    fields["steps"] = [SchedStep(**step) for step in fields.get("steps", [])]
    return CycleRecord(**fields)


def thin(rows: list, max_points: int | None) -> list:
    """Keep the last row of each of ``max_points`` equal time slices."""
    if not max_points or len(rows) <= max_points:
        return rows
    first, last = rows[0][0], rows[-1][0]
    width = (last - first) / max_points or 1.0
    kept: dict[int, Any] = {}
    for row in rows:
        kept[min(max_points - 1, math.floor((row[0] - first) / width))] = row
    return [kept[k] for k in sorted(kept)]


class PersistenceService:
    """Wires the store into the factory: cycle listener, credential listener, pruning thread."""

    def __init__(self, store: Store):
        self.store = store

    def cycle_done(self, queue: APFQueue, record: CycleRecord) -> None:
        self.store.record_cycle(record, QueueState(queue.cycles, queue.submitted_total, queue.errors_total,
                                                   queue.last_submission))

    def credential_checked(self, state: CredentialStatus) -> None:
        self.store.record_credential(state)

    def start(self) -> None:
        self.store.start()

    def stop(self) -> None:
        self.store.stop()

    def __repr__(self) -> str:
        return f"PersistenceService({self.store.path})"
