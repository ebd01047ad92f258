"""What a factory that runs for months needs: memory that stays the size of the present, views that never race.

Found by the soak (``make soak``): RSS grew with every pilot that ended (the Local
batch system kept the whole pilot for an hour, the store kept up to 20,000 ids per
queue), and ``/api/v1/factory`` answered 500 while the queues were starting.
"""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
import tracemalloc

from autopyfactory.factory import Factory
from autopyfactory.info import FinishedPilot
from autopyfactory.localbatch import LocalBatch, LocalPilot
from autopyfactory.persistence import Store
from tests.conftest import local_queue, wait_for


def test_a_finished_local_pilot_leaves_only_its_small_record(tmp_path):
    batch = LocalBatch(tick=0.05)
    try:
        ids = batch.submit("MEMQ", "f", ["/bin/true"], 20, str(tmp_path), 20, lambda jobid, out: {})
        wait_for(lambda: batch.status(["MEMQ"], "f")["MEMQ"].done == 20, what="20 pilots done")
        gc.collect()
        assert not [o for o in gc.get_objects() if isinstance(o, LocalPilot) and o.queue == "MEMQ"]
        first = batch.status(["MEMQ"], "f")["MEMQ"].finished
        second = batch.status(["MEMQ"], "f")["MEMQ"].finished
        assert sorted(p.jobid for p in first) == sorted(ids)
        assert all(a is b for a, b in zip(first, second, strict=True))  # polling creates no new records
        assert batch.states("MEMQ") == ["done"] * 20
    finally:
        batch.close()


def test_the_store_keeps_in_memory_only_the_last_answer(tmp_path):
    store = Store(str(tmp_path / "apf.sqlite"))
    now = time.time()

    def answer(i: int) -> list[FinishedPilot]:
        return [FinishedPilot(f"{i}.{j}", now - 5, now, 0, "done", "f") for j in range(500)]

    # only what this test and the store allocate: other tests' threads may still run in this process
    mine = [tracemalloc.Filter(True, __file__), tracemalloc.Filter(True, "*/persistence.py")]

    def allocated() -> int:
        gc.collect()
        return sum(stat.size for stat in tracemalloc.take_snapshot().filter_traces(mine).statistics("filename"))

    try:
        tracemalloc.start()
        before = allocated()
        previous: list[FinishedPilot] = []
        written = 0
        for i in range(60):  # a batch system's sliding memory: the last answer's pilots and 500 new ones
            current = answer(i)
            written += store.record_finished("Q", previous + current)
            store.flush()  # as the running store's thread does every persistence.flushinterval
            previous = current
        del current
        previous = previous[:1]
        retained = allocated() - before
        tracemalloc.stop()
        assert written == 60 * 500  # each pilot written once
        assert store.record_finished("Q", previous) == 0
        # the last answer's 500 ids (~100 kB); remembering 20,000 ids as before took ~3 MB
        assert retained < 600_000, retained
    finally:
        store.close()
    rows = sqlite3.connect(tmp_path / "apf.sqlite").execute("SELECT count(*) FROM pilots").fetchone()[0]
    assert rows == 60 * 500


def test_the_factory_views_answer_while_queues_start_and_stop(confdir):
    spool = confdir.root / "spool"
    confdir.write("".join(local_queue(f"Q{i:03d}", spool, **{"apfqueue.sleep": "60"}) for i in range(300)))
    factory = Factory(confdir.load())
    failures: list[BaseException] = []

    def start_and_stop() -> None:
        try:
            factory.start()
            for i in range(0, 300, 3):
                factory.stop_queue(f"Q{i:03d}", timeout=5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    worker = threading.Thread(target=start_and_stop)
    worker.start()
    views = 0
    try:
        while worker.is_alive():
            factory.summary()  # raised "dictionary changed size during iteration" while queues started
            views += 1
    finally:
        worker.join()
        left = len(factory.queues)
        factory.stop(timeout=10)
    assert not failures
    assert views > 10 and left == 200
