"""The persistence store: schema, migrations, corrupt files, retention, and a factory that restarts."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from autopyfactory import persistence
from autopyfactory.factory import Factory
from autopyfactory.info import CredentialStatus, FinishedPilot
from autopyfactory.persistence import (
    MIGRATIONS,
    SCHEMA_VERSION,
    QueueState,
    Store,
    thin,
)
from autopyfactory.records import AdminAction, CycleRecord, SchedStep
from tests.conftest import local_queue, wait_for


def record(queue: str, number: int, started: float, pending: int | None = 1, running: int | None = 2,
           submitted: int = 0, errors: list[str] | None = None) -> CycleRecord:
    batch = None if pending is None else {"pending": pending, "running": running, "exiting": 0, "held": 0,
                                          "done": 3, "fault": 0, "peers": {}}
    return CycleRecord(queue=queue, number=number, started=started, duration=0.05,
                       wms={"notready": 0, "ready": 7, "running": 4, "done": 0, "failed": 0, "status": "online"},
                       batch=batch, steps=[SchedStep("Ready", 6, "Ready: 6 (7 ready - 0 offset - 1 pending)"),
                                           SchedStep("MaxPerCycle", 5, "MaxPerCycle: 6 capped to 5")],
                       decided=5, submitted=submitted, errors=errors or [])


# ---------------------------------------------------------------- schema


def test_fresh_store_is_wal_with_current_schema(tmp_path: Path):
    store = Store(str(tmp_path / "sub" / "apf.sqlite"))
    store.close()
    conn = sqlite3.connect(tmp_path / "sub" / "apf.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"cycles", "submissions", "pilots", "credentials", "queue_state"} <= tables


def old_store(path: Path, version: int, queue_state: tuple) -> None:
    """A store as an older APF left it: schema ``version``, one queue_state row
    (queue, cycles, submitted_total, errors_total, last_submission)."""
    conn = sqlite3.connect(path)
    conn.executescript("".join(MIGRATIONS[:version]))
    conn.execute("INSERT INTO queue_state (queue, cycles, submitted_total, errors_total, last_submission, updated)"
                 " VALUES (?, ?, ?, ?, ?, ?)", (*queue_state, time.time()))
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


def test_old_schema_is_migrated_and_keeps_its_rows(tmp_path: Path):
    path = tmp_path / "apf.sqlite"
    old_store(path, 1, ("Q", 41, 99, 2, 1000.5))
    store = Store(str(path))
    state = store.queue_state("Q")
    store.close()
    assert (state.cycles, state.submitted_total, state.errors_total, state.last_submission) == (41, 99, 2, 1000.5)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"pilots_end", "admin_audit_time"} <= indexes
    assert conn.execute("SELECT count(*) FROM factory_history").fetchone()[0] == 0  # 5: the factory's samples
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_a_version_2_store_gains_the_audit_trail(tmp_path: Path):
    path = tmp_path / "apf.sqlite"
    old_store(path, 2, ("Q", 7, 3, 0, None))
    store = Store(str(path))
    store.record_admin(AdminAction(1000.0, "127.0.0.1", "pause", "Q", "ok", 200))
    store.record_admin(AdminAction(1001.0, "::1", "reload", None, "refused", 401, "wrong token"))
    assert store.queue_state("Q").cycles == 7
    store.close()
    store = Store(str(path))
    assert [a.to_dict() for a in store.admin_actions()] == [
        {"time": "1970-01-01T00:16:41Z", "client": "::1", "action": "reload", "target": None,
         "result": "refused", "status": 401, "detail": "wrong token"},
        {"time": "1970-01-01T00:16:40Z", "client": "127.0.0.1", "action": "pause", "target": "Q",
         "result": "ok", "status": 200, "detail": ""},
    ]
    store.close()


def test_the_audit_trail_keeps_the_newest_rows_only(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(persistence, "AUDIT_MAX_ROWS", 5)
    store = Store(str(tmp_path / "apf.sqlite"))
    for n in range(12):
        store.record_admin(AdminAction(2000.0 + n, "192.0.2.1", "reload", None, "refused", 401, f"try {n}"))
    assert [a.detail for a in store.admin_actions(100)] == [f"try {n}" for n in range(11, 6, -1)]
    # pruned by age like the rest of the history (keepdays 14)
    assert store.prune(now=2009.5 + 14 * 86400) == 3
    assert [a.detail for a in store.admin_actions(100)] == ["try 11", "try 10"]
    store.close()


def test_schema_from_a_newer_apf_is_set_aside_not_destroyed(tmp_path: Path):
    path = tmp_path / "apf.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    store = Store(str(path))
    assert store.usable and len(store.moved_aside) == 1
    kept = sqlite3.connect(store.moved_aside[0])
    assert kept.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5
    store.close()


@pytest.mark.parametrize("content", [b"this is not a database at all\n" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 5000])
def test_corrupt_file_is_moved_aside_and_a_fresh_store_works(tmp_path: Path, content: bytes):
    path = tmp_path / "apf.sqlite"
    path.write_bytes(content)
    store = Store(str(path))
    assert store.usable
    assert len(store.moved_aside) == 1
    assert Path(store.moved_aside[0]).read_bytes() == content  # the operator can still look at it
    store.record_cycle(record("Q", 1, time.time()))
    assert store.queue_state("Q").cycles == 1
    store.close()


def test_database_going_bad_while_running_is_replaced(tmp_path: Path):
    path = tmp_path / "apf.sqlite"
    store = Store(str(path))
    store.record_cycle(record("Q", 1, time.time()))
    store.close()
    # garbage over the pages, then open again as a restarted daemon would
    with open(path, "r+b") as f:
        f.seek(0)
        f.write(os.urandom(4096))
    store = Store(str(path))
    assert store.usable and store.moved_aside
    assert store.queue_state("Q").cycles == 0
    store.close()


def test_database_going_bad_under_a_running_store_is_replaced_with_the_counters(tmp_path: Path):
    path = tmp_path / "apf.sqlite"
    store = Store(str(path))
    now = time.time()
    for number in range(1, 201):
        store.record_cycle(record("Q", number, now), QueueState(number, 10, 1, now - 5))
    store.prune()  # checkpoint: the pages are in the main file now
    with store._lock:  # read pages from disk again instead of from this connection's cache
        store._conn.execute("PRAGMA cache_size = 1")
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(20 * 4096))
    store.record_cycle(record("Q", 201, now), QueueState(201, 12, 1, now))
    store.flush()  # fails: malformed
    assert store.errors == 1 and len(store.moved_aside) == 1 and store.usable
    store.record_cycle(record("Q", 202, now), QueueState(202, 12, 1, now))
    state = store.queue_state("Q")  # a read writes what is buffered first
    assert (state.cycles, state.submitted_total, state.errors_total) == (202, 12, 1)
    assert [c.number for c in store.recent_cycles("Q", 10)] == [202]
    store.close()


# ---------------------------------------------------------------- writing and reading


def test_cycles_submissions_pilots_and_credentials_round_trip(tmp_path: Path):
    store = Store(str(tmp_path / "apf.sqlite"))
    now = time.time()
    store.record_cycle(record("Q", 1, now - 30, submitted=5))
    store.record_submission("Q", now - 29, "submit", 5, ["7.0", "7.1", "7.2", "7.3", "7.4"])
    store.record_cycle(record("Q", 2, now - 20, pending=None, errors=["boom"]))
    store.record_submission("Q", now - 10, "remove", 2, ["7.3", "7.4"])
    store.record_cycle(record("Q", 3, now - 10, pending=4, running=1))
    store.record_cycle(record("other", 1, now - 5))

    state = store.queue_state("Q")
    assert (state.cycles, state.submitted_total, state.errors_total) == (3, 5, 1)
    assert state.last_submission == pytest.approx(now - 10)
    assert [s["count"] for s in store.submissions("Q")] == [5, 2]
    assert store.submissions("Q")[0]["ids"][0] == "7.0"

    cycles = store.recent_cycles("Q", 10)
    assert [c.number for c in cycles] == [3, 2, 1]
    assert cycles[1].errors == ["boom"] and cycles[2].steps[1] == SchedStep("MaxPerCycle", 5,
                                                                              "MaxPerCycle: 6 capped to 5")
    assert cycles[2].message == cycles[2].to_dict()["message"]

    series = store.pilot_series("Q", now - 25)
    assert series == [(pytest.approx(now - 20), None, None), (pytest.approx(now - 10), 4, 1)]

    pilots = [FinishedPilot("7.0", now - 3000, now - 100, 0, "done", "f1"),
              FinishedPilot("7.1", now - 3000, now - 50, 1, "fault", "f1"),
              FinishedPilot("6.9", now - 9000, now - 7200, 0, "done", "f1")]
    assert store.record_finished("Q", pilots) == 3
    assert store.record_finished("Q", pilots) == 0  # the same answer again writes nothing
    assert store.finished_counts("Q", now - 3600) == {"done": 1, "fault": 1}
    assert [p.jobid for p in store.finished("Q", now - 86400)] == ["7.1", "7.0", "6.9"]
    assert store.finished("Q", now - 3600)[1].runtime == pytest.approx(2900)

    store.record_credential(CredentialStatus("proxy", True, 7200.0, "fine"))
    store.record_credential(CredentialStatus("proxy", False, 0.0, "expired"))
    assert [c.ok for c in store.credentials("proxy")] == [True, False]
    store.close()


def test_cycles_and_pilots_of_every_queue_are_written_in_one_transaction(tmp_path: Path):
    store = Store(str(tmp_path / "apf.sqlite"))
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    now = time.time()
    for q in range(50):
        store.record_cycle(record(f"Q{q}", 1, now), QueueState(1, 0, 0, None))
        store.record_finished(f"Q{q}", [FinishedPilot(f"{q}.{j}", now - 60, now - 1, 0) for j in range(4)])
    assert statements == []  # a cycle touches no file
    assert store.flush() == 50 + 200 + 50 + 1  # cycles, pilots, counters, and the factory's first sample
    assert [s.split()[0] for s in statements].count("BEGIN") == 1 and store.flushes == 1
    assert store.flush() == 0 and store.flushes == 1  # nothing buffered, no transaction
    assert store.queue_state("Q7").cycles == 1 and len(store.finished("Q7", 0)) == 4
    store.close()


def test_a_buffered_cycle_never_undoes_a_submission_written_since(tmp_path: Path):
    """Invariant 2 after a restart rests on last_submission: a cycle's counters, written
    later than a submission that came after the cycle, must not take it back."""
    path = str(tmp_path / "apf.sqlite")
    store = Store(path)
    now = time.time()
    store.record_submission("Q", now - 100, "submit", 5, ["1_0"])
    store.record_cycle(record("Q", 1, now - 100, submitted=5), QueueState(1, 5, 0, now - 100))
    store.record_submission("Q", now, "submit", 7, ["2_0"])  # next cycle: written at once
    store.close()  # writes the older cycle's counters after it
    state = Store(path).queue_state("Q")
    assert (state.cycles, state.submitted_total, state.last_submission) == (1, 12, now)


def test_a_read_sees_every_buffered_write(tmp_path: Path):
    store = Store(str(tmp_path / "apf.sqlite"), flush_interval=3600)
    now = time.time()
    store.record_cycle(record("Q", 1, now))
    assert [c.number for c in store.recent_cycles("Q", 5)] == [1]
    store.close()


def test_thin_keeps_the_last_point_of_each_slice():
    rows = [(float(t), t, 0) for t in range(1000)]
    thinned = thin(rows, 10)
    assert len(thinned) == 10
    assert thinned[-1] == rows[-1]
    assert [r[0] for r in thinned] == sorted(r[0] for r in thinned)
    assert thin(rows[:5], 10) == rows[:5]


# ---------------------------------------------------------------- retention


def test_a_week_of_100_queues_stays_bounded(tmp_path: Path):
    """Cycles every 6 minutes for 100 queues, 7 days, keepdays=2: the file stops growing."""
    path = tmp_path / "apf.sqlite"
    store = Store(str(path), keepdays=2)
    queues = [f"SITE_{i:03d}" for i in range(100)]
    per_day = 240
    start = time.time() - 7 * 86400
    sizes = []
    sample = json.dumps(record("Q", 1, start, submitted=5).to_dict())
    for day in range(7):
        rows, subs, pilots = [], [], []
        for step in range(per_day):
            t = start + day * 86400 + step * 360
            for q in queues:
                rows.append((q, day * per_day + step, t, 0.05, 3, 10, 5, 5, 0, 0, "Ready: 5; submitted 5", sample))
                if step % 10 == 0:
                    subs.append((q, t, "submit", 5, json.dumps([f"{day}{step}.{k}" for k in range(5)])))
                    pilots += [(q, f"{q}.{day}.{step}.{k}", "f", "done", t, t + 300, 0) for k in range(5)]
        with store._lock:  # bulk load: a real week written fast, through the same tables
            conn = store._conn
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO cycles (queue, number, started, duration, pending, running, decided,"
                             " submitted, removed, errors, message, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            conn.executemany("INSERT INTO submissions (queue, time, kind, count, ids) VALUES (?,?,?,?,?)", subs)
            conn.executemany("INSERT INTO pilots VALUES (?,?,?,?,?,?,?)", pilots)
            conn.execute("COMMIT")
        for q in queues[:3]:  # and some through the ordinary path
            store.record_cycle(record(q, 10**6 + day, start + day * 86400 + 86399))
        store.prune(now=start + (day + 1) * 86400)
        sizes.append(store.size())
        print(f"day {day + 1}: {store.size() // 1024} KiB")

    with store._lock:
        oldest = store._conn.execute("SELECT min(started) FROM cycles").fetchone()[0]
        count = store._conn.execute("SELECT count(*) FROM cycles").fetchone()[0]
    store.close()
    assert oldest >= start + 5 * 86400 - 1  # only the last two days are left
    assert count <= 2 * per_day * 100 + 10
    # the size stops growing once two days are kept: days 3..7 stay within 20 % of day 3
    assert max(sizes[2:]) <= 1.2 * sizes[2], [s // 1024 for s in sizes]
    assert sizes[-1] < 2.0 * sizes[1], [s // 1024 for s in sizes]


def test_background_pruning_removes_old_rows(tmp_path: Path):
    store = Store(str(tmp_path / "apf.sqlite"), keepdays=1, prune_interval=0.2)
    now = time.time()
    store.record_cycle(record("Q", 1, now - 3 * 86400))
    store.record_submission("Q", now - 3 * 86400, "submit", 1, ["1.0"])
    store.record_finished("Q", [FinishedPilot("1.0", now - 3 * 86400, now - 3 * 86400 + 60, 0)])
    store.record_cycle(record("Q", 2, now))
    store.start()
    try:
        wait_for(lambda: len(store.recent_cycles("Q", 10)) == 1, what="the old cycle to be pruned")
        wait_for(lambda: not store.submissions("Q"), what="the old submission to be pruned")
        assert store.finished("Q", 0) == []
        assert store.queue_state("Q").cycles == 2  # counters are not history: they stay
    finally:
        store.stop()


# ---------------------------------------------------------------- a factory that restarts

SEEN_FINISHED = '''
from autopyfactory.interfaces import SchedulerPlugin

class SeenFinished(SchedulerPlugin):
    """Passes n on and says how many finished pilots the chain was given."""
    name = "SeenFinished"

    def calc(self, n, info):
        return n, f"SeenFinished: {len(info.finished)} finished"
'''

OK_CREDENTIAL = '''
from autopyfactory.info import CredentialStatus
from autopyfactory.interfaces import AuthPlugin

class AlwaysFine(AuthPlugin):
    """A credential that is always fine."""
    name = "AlwaysFine"

    def check(self):
        return CredentialStatus(self.section.name, True, 7200.0, "fine")
'''


def run_factory(confdir, cycles: int) -> Factory:
    config = confdir.load()
    factory = Factory(config)
    factory.start(cycles=cycles)
    wait_for(lambda: not any(q.alive for q in factory.queues.values()), what="the cycles to finish")
    return factory


def test_factory_restart_goes_on_from_the_stored_state(confdir):
    confdir.dropin("seen.py", SEEN_FINISHED)
    confdir.dropin("fine.py", OK_CREDENTIAL)
    confdir.work("Q1", 3, ["true"])
    queues = local_queue("Q1", confdir.spool, **{"executable.arguments": "--wrapperwmsqueue=Q1 --wrapperplugin=local"})
    confdir.write(queues.replace("schedplugin = Ready", "schedplugin = Ready, SeenFinished"),
                  auth="[fine]\nplugin = AlwaysFine\n")

    first = run_factory(confdir, 1)  # one cycle: exactly the 3 pilots for the 3 items
    queue = first.queues["Q1"]
    try:
        assert first.context.store is not None and queue.submitted_total == 3
        # wait until the three pilots have ended and the store has them
        wait_for(lambda: queue.finished_counts(time.time() - 3600)["done"] == 3, what="3 pilots done")
        before = (queue.cycles, queue.submitted_total, queue.errors_total, queue.last_submission)
        series = queue.store.pilot_series(queue.name, 0)
        assert len(series) == 1 and series[0][1:] == (0, 0)
        assert first.context.store.credentials("fine")[0].message == "fine"
    finally:
        first.stop()

    # a new process: its Local batch system has never heard of those pilots
    second = run_factory(confdir, 2)
    queue = second.queues["Q1"]
    try:
        batch, _, _ = queue.batch_status()
        assert batch is not None and batch.done == 0
        assert (queue.cycles - 2, queue.submitted_total, queue.errors_total, queue.last_submission) == before
        summary = queue.summary()
        assert summary["done_1h"] == 3 and summary["fault_1h"] == 0
        assert summary["cycle_count"] == before[0] + 2
        numbers = [r.number for r in queue.records]
        assert numbers == [3, 2, 1]  # the restored record of cycle 1 under the two new ones
        # the scheduler chain was handed the pilots that finished before the restart
        assert "SeenFinished: 3 finished" in queue.records[0].message
        assert len(queue.store.pilot_series(queue.name, 0)) == before[0] + 2
    finally:
        second.stop()


def test_a_cycle_reads_and_writes_nothing_on_disk(confdir):
    """2,000 queues each reading their finished pilots back every cycle was a third of the steady CPU:
    the queue keeps them in memory, and its cycles are written once per persistence.flushinterval."""
    confdir.work("Q1", 2, ["true"])
    confdir.write(local_queue("Q1", confdir.spool, **{
        "executable.arguments": "--wrapperwmsqueue=Q1 --wrapperplugin=local"}),
        factory="persistence.flushinterval = 3600\n")
    factory = run_factory(confdir, 1)
    queue = factory.queues["Q1"]
    store = factory.context.store
    try:
        wait_for(lambda: queue.summary()["done_1h"] == 2, what="the two pilots done")
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        for _ in range(5):
            queue.run_cycle()
        assert queue.summary()["done_1h"] == 2
        assert statements == []
        store.flush()
        assert [s.split()[0] for s in statements].count("BEGIN") == 1
        assert len(store.finished("Q1", 0)) == 2 and store.queue_state("Q1").cycles == queue.cycles
    finally:
        factory.stop()


def test_unusable_store_location_leaves_the_factory_running_without_history(confdir, tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    confdir.work("Q1", 1, ["true"])
    confdir.write(local_queue("Q1", confdir.spool), factory=f"persistence.dbpath = {blocker}/apf.sqlite\n")
    factory = run_factory(confdir, 2)
    try:
        assert factory.context.store is None
        assert factory.queues["Q1"].cycles == 2
        assert factory.queues["Q1"].summary()["done_1h"] is not None
    finally:
        factory.stop()


def test_a_store_that_became_unusable_falls_back_to_the_batch_status(confdir):
    confdir.work("Q1", 1, ["true"])
    confdir.write(local_queue("Q1", confdir.spool, **{
        "executable.arguments": "--wrapperwmsqueue=Q1 --wrapperplugin=local"}))
    factory = run_factory(confdir, 1)
    queue = factory.queues["Q1"]
    try:
        wait_for(lambda: queue.summary()["done_1h"] == 1, what="the pilot done")
        factory.context.store.close()  # as after a failed recovery: no history any more
        assert not factory.context.store.usable
        batch, _, _ = queue.batch_status()
        assert queue.summary()["done_1h"] == batch.done == 1  # not a silent 0
    finally:
        factory.stop()
