"""The scheduler chain inside real queue cycles (Local WMS and Local batch: real processes)."""

from __future__ import annotations

from autopyfactory.factory import Factory
from tests.conftest import wait_for
from tests.sched_helpers import queue_text


def run_factory_until(confdir, done, timeout: float = 90.0):
    """Run the factory until ``done(queue)`` holds; returns the queue."""
    config = confdir.load()
    factory = Factory(config)
    factory.start()
    try:
        queue = factory.queues["SITE"]

        def finished():
            assert done(queue), [r.message for r in queue.records]
            return True

        wait_for(finished, what=done.__name__, timeout=timeout)
        return queue
    finally:
        factory.stop()


def test_throttle_caps_a_queue_whose_pilots_die_at_once(confdir):
    """Pilots that exit within a second look like a black hole: the next cycles submit one pilot."""
    confdir.write(queue_text(
        "SITE", confdir.spool, "Ready, Throttle, MaxPerCycle", executable="/bin/false",
        **{"sched.maxpercycle.maximum": "5", "batchsubmit.local.maxrunning": "10"},
    ))
    confdir.work("SITE", 20)  # /bin/false claims no work: 20 stay ready

    def throttled(queue):
        return any(step.plugin == "Throttle" and "black hole" in step.message
                   for record in queue.records for step in record.steps)

    queue = run_factory_until(confdir, throttled)
    records = list(reversed(queue.records))  # oldest first
    first = next(i for i, r in enumerate(records) if any("black hole" in s.message for s in r.steps))
    assert sum(r.submitted for r in records[:first]) >= 1  # the short-lived pilots it learnt from
    record = records[first]
    assert [(s.plugin, s.n) for s in record.steps] == [("Ready", 20), ("Throttle", 1), ("MaxPerCycle", 1)]
    assert record.submitted <= 1
    assert "; Throttle: black hole? 20 capped to 1 (" in record.message
    assert all(r.submitted <= 1 for r in records[first:])


def test_keepnrunning_lowered_removes_only_idle_pilots(confdir):
    """KeepNRunning 5 fills the queue (2 running, 3 pending); lowered to 1 it asks to remove 4,
    and only the 3 pilots that have not started go."""
    confdir.write(queue_text(
        "SITE", confdir.spool, "KeepNRunning", executable="/bin/sleep", **{
            "executable.arguments": "60", "sched.keepnrunning.keep_running": "5",
            "batchsubmit.local.maxrunning": "2",
        },
    ))
    config = confdir.load()
    factory = Factory(config)
    factory.start()
    queue = factory.queues["SITE"]
    try:
        def filled():
            assert queue.submitted_total == 5 and _counts(queue) == (3, 2), [r.message for r in queue.records]
            return True

        wait_for(filled, what="5 pilots: 3 pending, 2 running", timeout=90)

        queue.schedulers[0].options["keep_running"] = 1  # what a reload with keep_running = 1 does
        record = wait_for(lambda: next((r for r in queue.records if r.removed), None),
                          what="a cycle that removes pilots", timeout=90)
        assert (record.steps[0].plugin, record.steps[0].n) == ("KeepNRunning", -4)
        assert record.removed == 3
        assert "KeepNRunning: -4 (1 keep - 3 pending - 2 running): remove 4 idle" in record.message
        wait_for(lambda: _counts(queue) == (0, 2), what="the pending pilots to go", timeout=90)
        assert _counts(queue) == (0, 2)  # both running pilots still run
        assert queue.submitted_total == 5
    finally:
        batch = queue.submitter.batch
        factory.stop()
        # the test's own pilots: do not leave them sleeping
        for pilot in list(batch._pilots.values()):
            if pilot.process is not None:
                pilot.process.kill()
                pilot.process.wait(10)


def _counts(queue) -> tuple[int, int] | None:
    batch, _, _ = queue.batch_status()
    return None if batch is None else (batch.pending, batch.running)
