"""maxperfactory.maximum with one queue's batch status unknown (issue 22, item 4).

Before: one queue's invalid status made the factory-wide count unknown, so
every queue stopped submitting for as long as it lasted, while their health
said "ok, submitting as needed".
"""

from __future__ import annotations

import pytest

from autopyfactory.factory import Factory
from tests.conftest import local_queue, wait_for

# Local pilots, but the answer for BAD is invalid while the marker file exists.
BROKEN = '''
import os
from autopyfactory.plugins.batchstatus.local import Local
from autopyfactory.status import Unknown

MARKER = {marker!r}

class Breaks(Local):
    name = "Breaks"

    def poll(self, queues):
        answer = super().poll(queues)
        if os.path.exists(MARKER):
            answer = {{q: Unknown("invalid answer: garbage") if q == "BAD" else info for q, info in answer.items()}}
        return answer
'''


@pytest.mark.parametrize("lastgood", [3600, 0])
def test_one_unknown_queue_does_not_silently_stop_the_others(confdir, tmp_path, lastgood):
    marker = tmp_path / "broken"
    confdir.dropin("breaks.py", BROKEN.format(marker=str(marker)))
    queues = "".join(local_queue(name, confdir.spool, executable="/bin/true", batchstatusplugin="Breaks")
                     for name in ("GOOD", "BAD"))
    confdir.write(queues, factory=f"batchstatus.breaks.sleep = 0.2\nmaxperfactory.maximum = 1000\n"
                                     f"maxperfactory.lastgood = {lastgood}\n")
    confdir.work("GOOD", 5)  # /bin/true claims nothing: GOOD wants 5 pilots in every cycle
    confdir.work("BAD", 5)
    factory = Factory(confdir.load())
    factory.start()
    try:
        good, bad = factory.queues["GOOD"], factory.queues["BAD"]
        wait_for(lambda: good.submitted_total >= 10 and bad.submitted_total >= 5, what="both queues submitting")
        marker.touch()
        wait_for(lambda: bad.last_record.batch is None, what="BAD's status to be unknown")
        assert bad.health().level == "critical"
        cycles, submitted = good.cycles, good.submitted_total
        wait_for(lambda: good.cycles >= cycles + 6, what="six more cycles of GOOD")
        records = [r for r in good.recent_records() if r.number > cycles + 1]
        if lastgood:  # BAD counts with its last good answer: GOOD goes on
            assert good.submitted_total >= submitted + 10, [r.message for r in records]
            assert good.health().level == "ok"
        else:  # past the age: the factory-wide cap stops GOOD, and GOOD says why
            assert all(r.submitted == 0 for r in records), [r.message for r in records]
            health = good.health()
            assert health.level == "critical", health
            assert health.reason.startswith("MaxPerFactory: factory-wide pilot count unknown (batch status of "
                                            "queue BAD unknown for"), health
        marker.unlink()  # BAD is good again: everyone submits
        wait_for(lambda: bad.last_record.batch is not None, what="BAD to be known again")
        submitted = good.submitted_total
        wait_for(lambda: good.submitted_total > submitted and good.health().level == "ok", what="GOOD submitting")
    finally:
        factory.stop()
