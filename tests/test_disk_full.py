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
