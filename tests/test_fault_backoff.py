"""Fault backoff (safety invariant 7): a black-hole queue drops to one probe pilot per cycle.

Before, a queue whose pilots all faulted went on replacing them at full rate
(116 pilots in about 12 s for 10 ready items).
"""

from __future__ import annotations

from autopyfactory.factory import Factory
from autopyfactory.info import FinishedPilot
from autopyfactory.queue import fault_backoff
from tests.conftest import local_queue, wait_for


def ended(*states: str) -> list[FinishedPilot]:
    """Pilots that ended, latest first."""
    return [FinishedPilot(str(i), 0.0, 1000.0 - i, 0 if s == "done" else 1, s) for i, s in enumerate(states)]


def test_fault_backoff_rule(confdir):
    confdir.write(local_queue("Q", confdir.spool)
                  + local_queue("OFF", confdir.spool, **{"apfqueue.faultbackoff": "false"}))
    config = confdir.load()
    queue = config.queues["Q"]
    assert fault_backoff(ended("fault", "fault", "fault"), queue) == (
        "fault backoff: 3 of the last 3 pilots faulted, one probe pilot per cycle")
    assert fault_backoff(ended("fault", "fault"), queue) is None  # too few to judge (minimum 3)
    assert fault_backoff(ended("done", "fault", "fault", "fault"), queue) is None  # a pilot ended well
    assert fault_backoff(ended("fault", "done", "fault", "done"), queue) is None  # half is not most
    assert fault_backoff(ended("fault", "removed", "fault", "fault"), queue) is not None  # removals do not count
    # only the latest faultbackoff.pilots (10) are judged
    assert fault_backoff(ended("fault", "fault", *["done"] * 8, *["fault"] * 20), queue) is None
    assert fault_backoff(ended("fault", "fault", "fault"), config.queues["OFF"]) is None


def test_black_hole_queue_submits_one_probe_per_cycle_and_recovers(confdir, tmp_path):
    good = tmp_path / "pilots-work-now"
    confdir.write(local_queue("HOLE", confdir.spool, executable="/bin/sh",
                              **{"executable.arguments": f"-c 'test -e {good}'",
                                 "batchsubmit.local.maxrunning": "10"}))
    confdir.work("HOLE", 10)
    config = confdir.load()
    factory = Factory(config)
    factory.start()
    try:
        queue = factory.queues["HOLE"]
        wait_for(lambda: queue.fault_backoff, what="fault backoff")
        health = queue.health()
        assert health.level == "critical" and health.reason.startswith("fault backoff: "), health
        cycles, submitted = queue.cycles, queue.submitted_total
        wait_for(lambda: queue.cycles >= cycles + 12, what="twelve cycles in backoff")
        in_backoff = [r for r in queue.recent_records() if r.number > cycles]
        assert all(r.submitted <= 1 for r in in_backoff), [r.message for r in in_backoff]
        assert queue.submitted_total - submitted <= 12
        assert any("capped to 1" in r.message for r in in_backoff), [r.message for r in in_backoff]
        # the site is fixed: the next probe ends well and the queue submits at full rate again
        good.touch()
        wait_for(lambda: not queue.fault_backoff, what="the backoff to end")
        wait_for(lambda: any(r.submitted > 1 for r in queue.recent_records(5)), what="a full submission")
        assert queue.health().level != "critical"
    finally:
        factory.stop()


def test_check_config_warns_about_a_missing_executable(confdir):
    confdir.write(local_queue("GONE", confdir.spool, executable="/opt/nowhere/pilot")
                  + local_queue("HERE", confdir.spool, executable="/bin/true"))
    warnings = [str(w) for w in confdir.load().warnings]
    assert any("[GONE] executable: '/opt/nowhere/pilot' is not an executable file on this host" in w
               for w in warnings), warnings
    assert not any("[HERE] executable" in w for w in warnings)
