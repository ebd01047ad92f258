"""Alive-peer counting and the share of the work (pure functions)."""

from __future__ import annotations

import json

import pytest

from autopyfactory.factory import Factory
from autopyfactory.info import BatchQueueInfo, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo
from autopyfactory.peers import alive_peers, alive_window, peers_pending, share
from autopyfactory.plugins.sched.builtin import Ready
from tests.conftest import local_queue
from tests.sched_helpers import make
from tests.test_persistence import wait_for

NOW = 1_000_000.0


def test_a_peer_is_alive_while_it_has_pending_pilots_or_submitted_within_the_window():
    peers = {
        "fresh": {"pending": 3, "running": 1, "submitted_last": NOW - 10},
        "edge": {"pending": 0, "running": 5, "submitted_last": NOW - 90},
        "gone": {"pending": 0, "running": 2, "submitted_last": NOW - 91},
        "idle": {"pending": 2, "running": 0, "submitted_last": NOW - 900},  # serving the queue, quietly
        "never": {"pending": 0, "running": 4},
        "me": {"pending": 9, "running": 9, "submitted_last": NOW},
    }
    assert alive_peers(peers, "me", NOW, alive_window(3, 30.0)) == ["edge", "fresh", "idle"]
    assert alive_peers({}, "me", NOW, 90.0) == []


def test_peers_pending_counts_every_other_factory():
    peers = {"a": {"pending": 3}, "b": {"pending": 2, "submitted_last": 0}, "me": {"pending": 7}, "c": {}}
    assert peers_pending(peers, "me") == 5


def test_share_is_the_ceiling_of_need_over_alive_factories():
    assert share(10, 0) == 10
    assert share(10, 1) == 5
    assert share(11, 1) == 6
    assert share(1, 3) == 1
    assert share(0, 2) == 0
    assert share(-4, 1) == 0


# ---------------------------------------------------------------- Ready shares the work


def ready_info(ready: int, pending: int, peers: dict, alive: int) -> SchedInfo:
    return SchedInfo(wms=WMSQueueInfo(ready=ready), batch=BatchQueueInfo(pending=pending, peers=peers),
                     now=NOW, alive_peers=alive)


def test_ready_without_sharing_ignores_peers():
    plugin = make(Ready, {"factoryid": "me"})
    n, message = plugin.calc(0, ready_info(20, 2, {"b": {"pending": 8, "submitted_last": NOW}}, 1))
    assert n == 18 and message == "Ready: 18 (20 ready - 0 offset - 2 pending)"


def test_ready_sharing_subtracts_every_factorys_pending_and_takes_its_share():
    plugin = make(Ready, {"factoryid": "me"}, sharewithpeers=True, offset=1)
    peers = {"b": {"pending": 4, "running": 3, "submitted_last": NOW}, "c": {"pending": 2, "submitted_last": 0}}
    n, message = plugin.calc(0, ready_info(20, 3, peers, 1))
    assert n == 5  # ceil((20 - 1 - 3 - 6) / 2)
    assert message == ("Ready: 5 (20 ready - 1 offset - 3 pending - 6 peers' pending = 10,"
                       " shared by 2 alive factories)")
    assert plugin.calc(0, ready_info(20, 3, peers, 0))[0] == 10  # alone: all of it
    assert plugin.calc(0, ready_info(5, 3, peers, 1))[0] == 0  # covered already
    # our own entry in peers (a plugin that lists every factory) is not counted twice
    assert plugin.calc(0, ready_info(20, 3, {**peers, "me": {"pending": 3}}, 1))[0] == 5


# ---------------------------------------------------------------- the queue counts alive peers

PEER_BATCH = '''
import json, time
from autopyfactory.config import Key
from autopyfactory.info import BatchQueueInfo
from autopyfactory.plugins.batchstatus.local import Local

class PeerLocal(Local):
    """Local pilots, plus peers read from a JSON file: {factory: [pending, seconds since last submit]}."""
    name = "PeerLocal"
    keys = {"peers": Key("path", "")}
    endpoint_keys = ("peers",)

    def poll(self, queues):
        with open(self.options["peers"]) as handle:
            peers = {f: {"pending": p, "running": 0, "submitted_last": time.time() - age}
                     for f, (p, age) in json.load(handle).items()}
        answer = super().poll(queues)
        return {q: BatchQueueInfo(pending=i.pending, running=i.running, peers=peers) for q, i in answer.items()}
'''


@pytest.mark.parametrize("pending, age, alive, submitted", [
    (2, 1.0, 1, 4),  # submitted a moment ago: alive
    (2, 1000.0, 1, 4),  # idle for longer than the window, but its pending pilots serve the queue: alive
    (0, 1000.0, 0, 10),  # nothing pending, nothing submitted lately: gone
])
def test_queue_counts_a_peer_alive_while_it_submits_or_has_pending_pilots(
        confdir, pending: int, age: float, alive: int, submitted: int):
    confdir.dropin("peerlocal.py", PEER_BATCH)
    peers = confdir.root / "peers.json"
    peers.write_text(json.dumps({"other-factory": [pending, age]}))
    confdir.work("Q1", 10, ["true"])
    queue = local_queue("Q1", confdir.spool, **{
        "batchstatusplugin": "PeerLocal", "batchstatus.peerlocal.peers": str(peers),
        "sched.ready.sharewithpeers": "true", "executable": "/bin/true", "apfqueue.sleep": "10",
    }).replace("batchstatusplugin = Local\n", "")
    confdir.write(queue, factory="peers.alivecycles = 3\n")  # alive window: 3 x 10 s
    config = confdir.load()
    factory = Factory(config)
    factory.start(cycles=1)
    try:
        wait_for(lambda: not factory.queues["Q1"].alive, what="one cycle")
        record = factory.queues["Q1"].records[0]
        assert record.submitted == submitted, record.message
        assert f"shared by {1 + alive} alive factories" in record.message
    finally:
        factory.stop()


def test_the_documented_example_holds():
    plugin = make(Ready, {"factoryid": "me"}, sharewithpeers=True)
    n, message = plugin.calc(0, ready_info(40, 7, {"other": {"pending": 9, "submitted_last": NOW}}, 1))
    assert (n, message) == (12, "Ready: 12 (40 ready - 0 offset - 7 pending - 9 peers' pending = 24,"
                                " shared by 2 alive factories)")
