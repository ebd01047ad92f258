"""A status plugin that lies (negative, None, wrong type, huge counts) harms only its own queue.

A real factory with its web server: the lying queues submit nothing and say
why, the honest queue beside them goes on submitting, and the status page,
the metrics and the API keep answering.
"""

from __future__ import annotations

import requests

from tests.conftest import local_queue, wait_for
from tests.web_support import start_factory

LIAR = '''
import math
from autopyfactory.info import BatchQueueInfo, FinishedPilot
from autopyfactory.plugins.batchstatus.local import Local

ANSWERS = {
    "NEG": BatchQueueInfo(pending=-1000),
    "NONE": BatchQueueInfo(pending=None),
    "TEXT": BatchQueueInfo(running="lots"),
    "HUGE": BatchQueueInfo(pending=10**12),
    "FLOAT": BatchQueueInfo(pending=2.5),
    "PEERS": BatchQueueInfo(peers={"other": {"pending": -7}}),
    "ENDS": BatchQueueInfo(finished=(FinishedPilot("1.0", None, math.nan),)),
    "ACTIVE": BatchQueueInfo(running=1, active={"1.0": "sleeping"}),
    "DICT": {"pending": 0, "running": 0},
}

class Liar(Local):
    """Local pilots, but the answer for every queue named in ANSWERS is garbage."""
    name = "Liar"

    def poll(self, queues):
        answer = super().poll(queues)
        return {q: ANSWERS.get(q, info) for q, info in answer.items()}
'''

EXPECTED = {
    "NEG": "pending = -1000, not a whole number",
    "NONE": "pending = None, not a whole number",
    "TEXT": "running = 'lots', not a whole number",
    "HUGE": "pending = 1000000000000, not a whole number",
    "FLOAT": "pending = 2.5, not a whole number",
    "PEERS": "peers entry 'other' is not",
    "ENDS": "finished is not a list of FinishedPilot",
    "ACTIVE": "active is not {batch id: running | exiting}",
    "DICT": "status is dict, not BatchQueueInfo",
}


def test_lying_batch_status_is_unknown_for_its_queue_only(confdir):
    confdir.dropin("liar.py", LIAR)
    liars = "".join(local_queue(name, confdir.spool, executable="/bin/true", batchstatusplugin="Liar")
                    for name in EXPECTED)
    for name in EXPECTED:
        confdir.work(name, 10)
    running = start_factory(confdir, {"GOOD": 3}, sections=liars)
    try:
        factory = running.factory
        good = factory.queues["GOOD"]
        wait_for(lambda: all(factory.queues[n].cycles >= 3 for n in EXPECTED), what="three cycles of every liar")
        for name, reason in EXPECTED.items():
            queue = factory.queues[name]
            assert queue.submitted_total == 0, (name, queue.last_record.message)
            record = queue.last_record
            assert not record.errors, (name, record.errors)
            assert f"invalid answer: {reason}" in record.message, (name, record.message)
            health = queue.health()
            assert health.level == "critical" and "invalid answer" in health.reason, (name, health)
        # the honest queue beside them: its cycles do not fail and it submits its work
        wait_for(lambda: good.submitted_total == 3, what="GOOD to submit its 3 pilots")
        assert not any(r.errors for r in good.recent_records()), [r.errors for r in good.recent_records()]
        # the factory-wide count (MaxPerFactory) treats the liars as unknown, never raises
        assert factory.pilots.count() is None
        for path in ("/", "/metrics", "/api/v1/queues", "/api/v1/queues/NEG", "/api/v1/factory"):
            response = requests.get(running.url + path, timeout=10)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
        queues = {q["name"]: q for q in requests.get(running.url + "/api/v1/queues", timeout=10).json()["queues"]}
        assert queues["NEG"]["pending"] is None and queues["NEG"]["health"] == "critical"
        assert queues["GOOD"]["pending"] is not None
    finally:
        running.stop()
