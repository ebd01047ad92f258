"""Submissions do not multiply status queries: at most two per endpoint per status interval.

Before, every submitting queue woke its batch status poller, which then
queried once a second whatever its interval (53 Local queries in 45 s with a
10 s interval and 20 queues submitting).
"""

from __future__ import annotations

import time

from autopyfactory.factory import Factory
from tests.conftest import local_queue, wait_for

INTERVAL = 4.0


def test_twenty_submitting_queues_make_at_most_two_queries_per_interval(confdir):
    names = [f"Q{i:02d}" for i in range(20)]
    # pilots end at once, so every queue submits again after every new answer
    confdir.write("".join(local_queue(n, confdir.spool, executable="/bin/true",
                                      **{"batchsubmit.local.maxrunning": "20", "apfqueue.sleep": "0.5"})
                          for n in names))
    path = confdir.root / "factory.conf"
    path.write_text(path.read_text().replace("batchstatus.local.sleep = 0.2",
                                             f"batchstatus.local.sleep = {INTERVAL}"))
    for name in names:
        confdir.work(name, 3)
    config = confdir.load()
    factory = Factory(config)
    factory.start()
    try:
        queues = list(factory.queues.values())
        poller = queues[0].batch_poller
        wait_for(lambda: all(q.submitted_total >= 1 for q in queues), what="every queue to submit")
        calls, submitted, start = poller.calls, sum(q.submitted_total for q in queues), time.time()
        # six more queries: at two per interval at most, they span at least two whole intervals
        wait_for(lambda: poller.calls >= calls + 6, timeout=120, what="six more batch status queries")
        elapsed = time.time() - start
        assert sum(q.submitted_total for q in queues) - submitted >= 20, "the queues kept submitting meanwhile"
        assert elapsed >= 2 * INTERVAL, f"6 queries in {elapsed:.1f}s with a {INTERVAL:g}s interval"
        # invariant 2 still holds: every submission planned from a status newer than the one before
        for queue in queues:
            records = sorted((r for r in queue.recent_records() if r.submitted), key=lambda r: r.number)
            for before, after in zip(records, records[1:], strict=False):
                assert after.batch_time > before.submitted_at, (queue.name, before.message, after.message)
    finally:
        factory.stop()
