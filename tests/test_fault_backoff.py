"""Fault backoff (safety invariant 7): a black-hole queue drops to probe pilots.

Before, a queue whose pilots all faulted went on replacing them at full rate
(116 pilots in about 12 s for 10 ready items).
"""

from __future__ import annotations

import os
import signal

from autopyfactory.factory import Factory
from autopyfactory.info import FinishedPilot
from autopyfactory.localbatch import LocalBatch
from autopyfactory.queue import fault_backoff, probe_pilots
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
        "fault backoff: 3 of the last 3 pilots faulted, probe pilots only (normal again at 0.2 or less)")
    assert fault_backoff(ended("fault", "fault"), queue) is None  # too few to judge (minimum 3)
    assert fault_backoff(ended("fault", "done", "fault", "done"), queue) is None  # half is not most
    assert fault_backoff(ended("fault", "removed", "fault", "fault"), queue) is not None  # removals do not count
    # only the latest faultbackoff.pilots (10) are judged
    assert fault_backoff(ended("fault", "fault", *["done"] * 8, *["fault"] * 20), queue) is None
    assert fault_backoff(ended("fault", "fault", "fault"), config.queues["OFF"]) is None
    # hysteresis: in backoff it stays until at most leavefraction (0.2) of them faulted
    assert fault_backoff(ended("done", "fault", "fault", "fault"), queue) is not None  # 3 of 4: enters
    half = ended(*["fault", "done"] * 5)
    assert fault_backoff(half, queue) is None  # half is not most: it does not enter...
    assert fault_backoff(half, queue, active=True) is not None  # ...and, once in, does not leave either
    assert fault_backoff(ended(*["done"] * 7, "fault", "fault", "fault"), queue, active=True) is not None
    assert fault_backoff(ended(*["done"] * 8, "fault", "fault"), queue, active=True) is None  # 2 of 10: leaves
    # probe pilots: one, and one more per pilot that ended well in a row
    assert [probe_pilots(ended(*states)) for states in (("fault",), ("done", "fault"), ("done", "removed", "done"))] \
        == [1, 2, 3]


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
        assert all(r.submitted <= 1 for r in in_backoff), [r.message for r in in_backoff]  # no pilot ends well
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


def transitions(states: list[bool]) -> int:
    return sum(1 for a, b in zip(states, states[1:], strict=False) if a != b)


def test_a_queue_faulting_half_the_time_does_not_flap(confdir, tmp_path):
    """Before: a queue whose pilots fault half the time went critical <-> recovered every few cycles."""
    counter = tmp_path / "pilots"
    # one pilot at a time, in turn: fault, fault, done, done, fault, fault, ... (half of them fault)
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}; test $((n %% 4)) -ge 2"
    confdir.write(local_queue("HALF", confdir.spool, executable="/bin/sh",
                              **{"executable.arguments": f"-c '{script}'", "batchsubmit.local.maxrunning": "1"}))
    confdir.work("HALF", 20)  # the pilots claim nothing: 20 items wanted in every cycle
    factory = Factory(confdir.load())
    states: list[bool] = []
    factory.listeners.append(lambda queue, record: states.append(queue.fault_backoff is not None))
    factory.start()
    try:
        queue = factory.queues["HALF"]
        wait_for(lambda: queue.fault_backoff, what="fault backoff")
        wait_for(lambda: counter.exists() and int(counter.read_text() or 0) >= 40, timeout=120, what="40 pilots ended")
        assert transitions(states) == 1, states  # entered once, stayed
        assert queue.health().level == "critical"
    finally:
        factory.stop()


def test_pilots_killed_by_an_operator_are_not_faults(confdir):
    """Before: kill -9 of running pilots counted as faults: fault backoff, critical and a mail."""
    confdir.write(local_queue("KILLED", confdir.spool, executable="/bin/sleep",
                              **{"executable.arguments": "300", "batchsubmit.local.maxrunning": "4"}))
    confdir.work("KILLED", 4)
    factory = Factory(confdir.load())
    factory.start()
    try:
        queue = factory.queues["KILLED"]
        batch = factory.context.shared("localbatch", LocalBatch)
        killed = 0
        for _ in range(2):  # twice four pilots, each killed by the operator once running
            wait_for(lambda: batch.states("KILLED").count("running") == 4, what="4 running pilots")
            for pid in batch.pids("KILLED"):
                os.kill(pid, signal.SIGKILL if killed % 2 else signal.SIGTERM)
                killed += 1
            wait_for(lambda k=killed: batch.states("KILLED").count("removed") == k, what="the killed pilots ended")
        finished = wait_for(lambda: len(queue.finished_pilots()) == 8 and queue.finished_pilots(),
                            what="the status to show the 8 ended pilots")
        assert [p.state for p in finished] == ["removed"] * 8
        assert {p.exitcode for p in finished} == {128 + signal.SIGKILL, 128 + signal.SIGTERM}
        cycles = queue.cycles
        wait_for(lambda: queue.cycles >= cycles + 2, what="two cycles after the kills")
        assert queue.fault_backoff is None and queue.health().level != "critical", queue.health()
    finally:
        for pid in batch.pids("KILLED"):
            os.kill(pid, signal.SIGKILL)
        factory.stop()
