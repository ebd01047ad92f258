"""Safety invariant 8, bounded pending: a default limit on pilots pending per queue, and the ledger as a floor.

Before: PanDA reporting 9,999,999 activated (a valid number) gave 1000 pilots
every cycle (18,000 in 58 s, 16,996 pending); a batch status plugin that always
answers 0 gave 200 pilots in a minute for 10 work items.
"""

from __future__ import annotations

from autopyfactory.factory import Factory
from autopyfactory.info import BatchQueueInfo
from autopyfactory.ledger import Ledger, pending_ceiling, with_ledger_floor
from autopyfactory.localbatch import LocalBatch
from tests.conftest import local_queue, wait_for
from tests.test_panda_factory import FAST, panda_queue

# A batch status that forgets every pilot: always 0 pending, 0 running, nothing finished.
FORGETFUL = '''
from autopyfactory.info import BatchQueueInfo
from autopyfactory.plugins.batchstatus.local import Local

class Forgetful(Local):
    name = "Forgetful"

    def poll(self, queues):
        super().poll(queues)
        return {q: BatchQueueInfo() for q in queues}
'''


def test_the_rules():
    assert pending_ceiling(1000, 0, 100) == (100, "apfqueue.maxpending ceiling: 1000 capped to 100 (100 max - 0 pending)")
    assert pending_ceiling(5, 98, 100) == (2, "apfqueue.maxpending ceiling: 5 capped to 2 (100 max - 98 pending)")
    assert pending_ceiling(5, 300, 100)[0] == 0  # never negative: a ceiling does not remove
    assert pending_ceiling(-3, 300, 100) == (-3, "")  # scale-down is the chain's, untouched
    assert pending_ceiling(5, 0, 100) == (5, "")
    batch = BatchQueueInfo(pending=2, running=3)
    assert with_ledger_floor(batch, 4) == (batch, "")
    floored, why = with_ledger_floor(batch, 12)
    assert floored.pending == 9 and floored.running == 3
    assert why == "ledger: 12 pilot(s) of this queue not seen ending, batch status shows 5: 7 more counted as pending"
    ledger = Ledger(maxage=100)
    ledger.submitted(["1", "2", "3"], when=1000)
    ledger.submitted(["4"], when=1050)
    ledger.ended(["2"])
    assert ledger.outstanding(now=1090) == 3
    assert ledger.outstanding(now=1120) == 1  # older than maxage: the batch status is trusted for them
    restored = Ledger(maxage=100)
    restored.restore([{"time": 1000, "kind": "submit", "ids": ["a", "b", "c"]},
                      {"time": 1010, "kind": "remove", "ids": ["c"]}], ended=["a"])
    assert restored.outstanding(now=1020) == 1


def test_panda_reporting_millions_activated_does_not_flood(confdir, panda):
    panda.set_site("TEST_SITE_A", activated=9_999_999)
    # pilots that start one at a time and run a while: everything else waits as pending
    slow = {"executable": "/bin/sleep", "executable.arguments": "1", "batchsubmit.local.maxrunning": "1"}
    confdir.write(panda_queue("CAPPED", panda.url, **slow, **{"apfqueue.maxpending": 15})
                  + panda_queue("PLAIN", panda.url, **slow), factory=FAST)
    config = confdir.load()
    assert config.queues["PLAIN"].values["apfqueue.maxpending"] == 100  # on by default
    factory = Factory(config)
    factory.start()
    try:
        capped, plain = factory.queues["CAPPED"], factory.queues["PLAIN"]
        wait_for(lambda: capped.cycles >= 8 and plain.cycles >= 8 and capped.submitted_total > 15,
                 what="eight cycles of each queue, pilots of CAPPED starting")
        batch = factory.context.shared("localbatch", LocalBatch)
        for queue, limit in ((capped, 15), (plain, 100)):
            records = queue.recent_records()
            assert max(r.submitted for r in records) <= limit, [r.message for r in records]
            seen = [r.batch["pending"] for r in records if r.batch]
            assert seen and max(seen) <= limit, seen
            assert batch.states(queue.name).count("pending") <= limit
            assert any("apfqueue.maxpending ceiling" in r.message for r in records), [r.message for r in records]
        assert plain.submitted_total <= 100 + 20  # one pilot a second starts: a few replaced, no flood
    finally:
        factory.stop()


def test_a_batch_status_that_always_answers_zero_cannot_flood(confdir):
    confdir.dropin("forgetful.py", FORGETFUL)
    confdir.write(local_queue("FORGET", confdir.spool, batchstatusplugin="Forgetful", executable="/bin/true"),
                  factory=f"persistence.dbpath = {confdir.root / 'apf.sqlite'}\n")
    confdir.work("FORGET", 10)  # /bin/true claims nothing: 10 items stay ready for ever
    factory = Factory(confdir.load())
    factory.start()
    try:
        queue = factory.queues["FORGET"]
        wait_for(lambda: queue.submitted_total >= 10 and queue.cycles >= 12, what="twelve cycles")
        assert queue.submitted_total == 10, [r.message for r in queue.recent_records()]
        assert "ledger: 10 pilot(s) of this queue not seen ending, batch status shows 0" in queue.last_record.message
    finally:
        factory.stop()
    # a restart keeps the ledger (from the store): still no flood
    factory = Factory(confdir.load())
    factory.start()
    try:
        queue = factory.queues["FORGET"]
        cycles = queue.cycles
        wait_for(lambda: queue.cycles >= cycles + 6, what="six cycles after the restart")
        assert queue.submitted_total == 10, [r.message for r in queue.recent_records()]
    finally:
        factory.stop()
