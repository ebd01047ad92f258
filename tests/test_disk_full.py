"""A full disk under baseLogDir and the store never loses the count of submitted pilots.

A real 2 MB tmpfs holds the pilot logs, the submit descriptions and the
persistence store; it is filled up, then work arrives. Before, Local submit
started the pilots and then failed writing the ``.jdl``: the cycle never
counted them, never set the last submission, and the no-double-submission
guard was skipped (173 pilots started against 63 recorded).
"""

from __future__ import annotations

import pytest

from autopyfactory.factory import Factory
from autopyfactory.localbatch import LocalBatch
from tests.conftest import fill, local_queue, small_tmpfs, wait_for


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "disk", "2m") as mount:
        yield mount


def test_full_disk_never_loses_submitted_pilots(confdir, small_disk):
    queue = local_queue("FULL", confdir.spool, executable="/bin/sleep",
                        **{"executable.arguments": "60", "batchsubmit.local.maxrunning": "2"})
    confdir.write(queue, factory=f"persistence.dbpath = {small_disk / 'apf.sqlite'}\n")
    confdir.logs = small_disk / "logs"
    text = (confdir.root / "factory.conf").read_text().replace(f"baseLogDir = {confdir.root / 'logs'}",
                                                                 f"baseLogDir = {small_disk / 'logs'}")
    (confdir.root / "factory.conf").write_text(text)
    config = confdir.load()
    factory = Factory(config)
    factory.start()
    try:
        full = factory.queues["FULL"]
        wait_for(lambda: full.cycles >= 2, what="two cycles on an empty queue")
        fill(small_disk)
        confdir.work("FULL", 10)
        wait_for(lambda: full.submitted_total >= 1, what="a submission on the full disk")
        cycles = full.cycles
        wait_for(lambda: full.cycles >= cycles + 10, what="ten more cycles")
        batch = factory.context.shared("localbatch", LocalBatch)
        started = batch.states("FULL")
        # every pilot started is counted
        assert len(started) == full.submitted_total >= 10, (len(started), full.submitted_total)
        # and each submission was planned from a batch status newer than the one before (invariant 2)
        submissions = sorted((r for r in full.recent_records() if r.submitted), key=lambda r: r.number)
        for before, after in zip(submissions, submissions[1:], strict=False):
            assert after.batch_time > before.submitted_at, (before.message, after.message)
        message = next(r.message for r in full.recent_records() if r.submitted)
        assert ".jdl not written" in message and "No space left on device" in message
    finally:
        factory.stop()


def test_a_store_that_cannot_be_written_makes_counts_unknown_and_health_says_so(confdir, small_disk):
    """Before: the factory showed a store problem, but the queues stayed "ok" and done_1h said 40 while
    thousands of pilots ended (the counts came from a history no longer written)."""
    confdir.write(local_queue("ENDS", confdir.spool, executable="/bin/true"),
                  factory=f"persistence.dbpath = {small_disk / 'apf.sqlite'}\n")
    confdir.work("ENDS", 3)  # /bin/true claims nothing: 3 pilots in every cycle, each ending at once
    factory = Factory(confdir.load())
    factory.start()
    try:
        queue = factory.queues["ENDS"]
        wait_for(lambda: (queue.finished_counts(0) or {}).get("done", 0) >= 3, what="pilots ending, counted")
        assert queue.health().level == "ok"
        fill(small_disk)
        batch = factory.context.shared("localbatch", LocalBatch)
        ended = batch.states("ENDS").count("done")
        wait_for(lambda: factory.store.failing_since is not None, what="a failed write")
        wait_for(lambda: batch.states("ENDS").count("done") >= ended + 9, what="more pilots ending")
        assert queue.finished_counts(0) is None  # unknown, not a number that stopped moving
        summary = queue.summary()
        assert summary["done_1h"] is None and summary["fault_1h"] is None
        health = queue.health()
        assert health.level == "warning", health
        assert health.reason.startswith("persistence store cannot be written since "), health
        assert "done/fault counts unknown" in health.reason
        # space again: the next write succeeds and the counts come back
        (small_disk / "filler").unlink()
        wait_for(lambda: factory.store.failing_since is None, what="a write that succeeds")
        wait_for(lambda: queue.finished_counts(0) is not None, what="the counts back")
        assert queue.health().level == "ok"
    finally:
        factory.stop()
