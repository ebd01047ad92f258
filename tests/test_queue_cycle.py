"""The cycle and its safety rules, on a real in-process factory with Local pilots."""

from __future__ import annotations

import json

from tests import plugins_for_tests
from tests.conftest import local_queue, wait_for


def test_demo_loop_drains_work(confdir, started_factory):
    confdir.write(local_queue("Q", confdir.spool))
    confdir.work("Q", 5)
    factory = started_factory(confdir)
    queue = factory.queues["Q"]
    wait_for(lambda: len(list((confdir.spool / "Q" / "done").glob("*.json"))) == 5, what="work done")
    assert list((confdir.spool / "Q").glob("*.json")) == []
    # Ready counts running pilots that have not yet claimed work as missing: a pilot
    # or two more than items is APF's semantics; each then ends cleanly with no work
    wait_for(lambda: (b := queue.batch_status()[0]) is not None and b.done == queue.submitted_total
             and b.running == b.pending == 0, what="every pilot done")
    outs = [p.read_text() for p in confdir.logs.glob("*/Q/*.out")]
    assert len(outs) == queue.submitted_total
    assert sum("APF-WRAPPER-END status=ok exit=0" in text for text in outs) == 5
    assert all("APF-WRAPPER-END status=ok exit=0" in t or "status=nowork exit=0" in t for t in outs)


def test_failing_pilot_is_counted_as_fault(confdir, started_factory):
    confdir.write(local_queue("Q", confdir.spool))
    confdir.work("Q", 1, command=["false"])
    factory = started_factory(confdir)
    queue = factory.queues["Q"]
    wait_for(lambda: (b := queue.batch_status()[0]) is not None and b.fault == 1
             and b.running == b.pending == 0, what="a fault and no pilot left")
    # the pilot that ran the failing item is the fault; any extra pilot found no work and is done
    outs = [p.read_text() for p in confdir.logs.glob("*/Q/*.out")]
    assert sum("APF-WRAPPER-END status=workfailed exit=1" in text for text in outs) == 1
    assert queue.batch_status()[0].done == len(outs) - 1


def test_one_queue_raising_never_stops_another(confdir, started_factory):
    confdir.dropin("boom.py", plugins_for_tests.BOOM)
    confdir.write(local_queue("BAD", confdir.spool, schedplugin="Boom")
                  + local_queue("GOOD", confdir.spool))
    confdir.work("GOOD", 3)
    confdir.work("BAD", 3)
    factory = started_factory(confdir)
    bad, good = factory.queues["BAD"], factory.queues["GOOD"]
    wait_for(lambda: bad.errors_total >= 3 and good.submitted_total >= 3, what="both queues cycling")
    assert bad.submitted_total == 0
    assert "error: ZeroDivisionError: boom" in bad.records[0].message
    assert bad.alive and good.alive
    assert good.errors_total == 0
    wait_for(lambda: len(list((confdir.spool / "GOOD" / "done").glob("*.json"))) == 3, what="GOOD drained")


def test_unknown_wms_status_submits_nothing_and_says_why(confdir, started_factory):
    confdir.dropin("filewms.py", plugins_for_tests.FILE_WMS)
    wmsfile = confdir.root / "wms.json"
    wmsfile.write_text(json.dumps("fail"))
    # Fixed would submit 4 every cycle: only the safety rule stops it
    confdir.write(local_queue("Q", confdir.spool, wmsstatusplugin="FileWMS",
                              **{"wmsstatus.filewms.path": wmsfile, "schedplugin": "Fixed",
                                 "sched.fixed.pilotspercycle": "4"}),
                  factory="wmsstatus.filewms.sleep = 0.2\nwmsstatus.filewms.maxage = 1\n")
    factory = started_factory(confdir)
    queue = factory.queues["Q"]
    wait_for(lambda: queue.cycles >= 3, what="3 cycles")
    assert queue.submitted_total == 0
    message = queue.records[0].message
    assert "WMS status unknown" in message and "WMS endpoint answered 500" in message
    assert queue.records[0].decided == 4 and queue.records[0].submitted == 0

    wmsfile.write_text(json.dumps({"Q": 10}))  # the WMS answers again: submissions resume
    wait_for(lambda: queue.submitted_total > 0, what="submission after recovery")

    wmsfile.write_text(json.dumps("fail"))  # stale after maxage: unknown again, not the old number
    wait_for(lambda: "is " in queue.records[0].message and "old (maxage 1s)" in queue.records[0].message,
             what="stale status message")
    before, cycles = queue.submitted_total, queue.cycles
    wait_for(lambda: queue.cycles >= cycles + 3, what="3 cycles on the stale status")
    assert queue.submitted_total == before
    assert all("old (maxage 1s)" in r.message for r in list(queue.records)[:3])


def test_queue_missing_from_wms_answer_is_unknown(confdir, started_factory):
    confdir.dropin("filewms.py", plugins_for_tests.FILE_WMS)
    wmsfile = confdir.root / "wms.json"
    wmsfile.write_text(json.dumps({"OTHER": 10}))
    confdir.write(local_queue("Q", confdir.spool, wmsstatusplugin="FileWMS", schedplugin="Fixed",
                              **{"wmsstatus.filewms.path": wmsfile, "sched.fixed.pilotspercycle": "4"}),
                  factory="wmsstatus.filewms.sleep = 0.2\n")
    factory = started_factory(confdir)
    queue = factory.queues["Q"]
    wait_for(lambda: queue.cycles >= 2, what="2 cycles")
    assert queue.submitted_total == 0
    assert "reports nothing for Q" in queue.records[0].message


def test_no_double_submission_while_batch_status_is_older_than_the_last_submission(confdir, started_factory):
    confdir.dropin("slow.py", plugins_for_tests.SLOW_BATCH)
    confdir.write(local_queue("Q", confdir.spool, batchstatusplugin="SlowLocal", schedplugin="Fixed",
                              **{"sched.fixed.pilotspercycle": "2", "apfqueue.sleep": "0.1",
                                 "batchstatus.slowlocal.delay": "0.4",
                                 "executable": "/bin/sleep", "executable.arguments": "30"}),
                  factory="batchstatus.slowlocal.sleep = 0.1\n")
    factory = started_factory(confdir)
    queue = factory.queues["Q"]
    wait_for(lambda: queue.submitted_total >= 8, what="several submissions")
    factory.stop(timeout=5)
    records = list(reversed(queue.records))
    submissions = [r for r in records if r.submitted]
    held = [r for r in records if any("newer than the last submission" in h for h in r.holds)]
    assert held, "the rule never had to act: the test did not exercise it"
    for previous, current in zip(submissions, submissions[1:], strict=False):
        assert current.batch_time > previous.submitted_at


def test_hard_ceiling_maxpercycle_holds_whatever_the_chain_says(confdir, started_factory):
    # MaxPerCycle placed before a plugin that raises the number again
    confdir.write(local_queue("Q", confdir.spool, schedplugin="MaxPerCycle, Fixed",
                              **{"sched.maxpercycle.maximum": "2", "sched.fixed.pilotspercycle": "9",
                                 "executable": "/bin/true"}))
    factory = started_factory(confdir, cycles=1)
    factory.wait()
    record = factory.queues["Q"].records[0]
    assert record.decided == 9
    assert record.submitted == 2
    assert "MaxPerCycle ceiling: 9 capped to 2" in record.message


def test_maxperfactory_ceiling_across_queues(confdir, started_factory):
    queues = "".join(local_queue(f"Q{i}", confdir.spool, schedplugin="Fixed",
                                 **{"sched.fixed.pilotspercycle": "3", "executable": "/bin/sleep",
                                    "executable.arguments": "30", "batchsubmit.local.maxrunning": "100"})
                     for i in range(4))
    confdir.write(queues, factory="maxperfactory.maximum = 7\n")
    factory = started_factory(confdir)
    wait_for(lambda: all(q.cycles >= 6 for q in factory.queues.values()), what="6 cycles each")
    total = sum(q.submitted_total for q in factory.queues.values())
    assert total == 7


def test_paused_queue_submits_nothing(confdir, started_factory):
    confdir.write(local_queue("Q", confdir.spool, **{"executable": "/bin/sleep",
                                                     "executable.arguments": "30"}))
    confdir.work("Q", 2)
    factory = started_factory(confdir)
    queue = factory.queues["Q"]
    wait_for(lambda: queue.submitted_total == 2, what="first submission")
    queue.paused = True
    confdir.work("Q", 3)
    cycles = queue.cycles
    wait_for(lambda: queue.cycles >= cycles + 3, what="3 more cycles")
    assert queue.submitted_total == 2
    assert "queue paused" in queue.records[0].message
    assert queue.records[0].wms["ready"] == 5  # status is still reported


def test_submit_plugin_prepares_after_a_cycle_that_submitted_and_its_answer_times_the_submission(
        confdir, started_factory):
    """Readying every queue before its first cycle cost a fifth of the first-cycle CPU at 500 queues
    (the day's log directory and a launcher), and the log directory alone still adds 37 % to it (the
    launcher is shipped since; docs/performance.md): only a queue that submits readies its next one."""
    confdir.dropin("stamped.py", plugins_for_tests.STAMPED_SUBMIT)
    confdir.write(local_queue("Q", confdir.spool, batchsubmitplugin="StampedLocal", schedplugin="Fixed",
                              **{"sched.fixed.pilotspercycle": "1", "apfqueue.sleep": "0.2"})
                  + local_queue("IDLE", confdir.spool, batchsubmitplugin="StampedLocal", schedplugin="Fixed",
                                **{"sched.fixed.pilotspercycle": "0", "apfqueue.sleep": "0.2"}))
    factory = started_factory(confdir, cycles=3)
    queue, idle = factory.queues["Q"], factory.queues["IDLE"]
    wait_for(lambda: not queue.alive and not idle.alive, what="three cycles of each queue")
    plugin = type(queue.submitter)
    records = list(reversed(queue.records))
    # nothing before the first cycle; after each cycle that submitted (not the last), for the next one
    mine = [(at, when) for at, when, name in plugin.prepared if name == "Q"]
    assert len(mine) == 2 and all(r.submitted == 1 for r in records)
    for (at, when), done, following in zip(mine, records[:-1], records[1:], strict=True):
        assert done.started < at < following.started and when > done.started
    assert idle.cycles == 3 and not [p for p in plugin.prepared if p[2] == "IDLE"]  # never submitted: never readied
    # the submission counts from the batch system's answer (invariant 2), not from the end of the call
    submissions = [r for r in reversed(queue.records) if r.submitted]
    assert submissions and [r.submitted_at for r in submissions] == plugin.answered[:len(submissions)]
    assert queue.last_submission == submissions[-1].submitted_at
    assert records[-1].number == 3


def test_an_idle_queue_logs_a_repeated_cycle_at_debug_and_a_change_at_info(confdir, started_factory, caplog,
                                                                          monkeypatch):
    """At 2,000 queues an INFO line for every idle cycle was a third of a cycle's CPU (and 11 million
    lines a day): a cycle that repeats the last is DEBUG, one that does or sees something new is INFO,
    and an idle queue still says it is alive every QUIET_LINE_EVERY seconds."""
    from autopyfactory import queue as queue_module

    caplog.set_level("DEBUG", logger="autopyfactory.queue")
    monkeypatch.setattr(queue_module, "QUIET_LINE_EVERY", 2.0)
    confdir.write(local_queue("Q", confdir.spool, **{"apfqueue.sleep": "0.2"}))
    factory = started_factory(confdir)
    queue = factory.queues["Q"]
    wait_for(lambda: queue.cycles >= 6, what="idle cycles")

    def lines(level: str) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelname == level and r.getMessage().startswith("queue Q cycle")]

    assert lines("INFO")[0].startswith("queue Q cycle 1:")  # the first cycle says what it sees
    assert len(lines("DEBUG")) >= 4  # the idle cycles after it repeat it
    quiet = len(lines("INFO"))
    confdir.work("Q", 1)  # something new: the cycle that sees it and submits is INFO
    wait_for(lambda: queue.submitted_total >= 1, what="a submission")
    wait_for(lambda: any("submitted" in line for line in lines("INFO")), what="the submitting cycle's INFO line")
    assert not [line for line in lines("DEBUG") if "submitted" in line]
    assert len(lines("INFO")) > quiet
    # nothing new for longer than QUIET_LINE_EVERY: still one INFO line per QUIET_LINE_EVERY
    wait_for(lambda: (b := queue.batch_status()[0]) is not None and b.running == b.pending == 0, what="pilot ended")
    settled = len(lines("INFO"))
    wait_for(lambda: len(lines("INFO")) >= settled + 2, timeout=15, what="the idle queue's periodic INFO lines")
    assert len(lines("DEBUG")) > len(lines("INFO"))
