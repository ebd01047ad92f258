"""A default ceiling per cycle, and queue threads that die are restarted (issue: no default ceiling)."""

from __future__ import annotations

import threading

from autopyfactory.factory import Factory
from autopyfactory.queue import cycle_ceiling
from tests.conftest import local_queue, wait_for


def factory_of(confdir) -> Factory:
    config = confdir.load()
    return Factory(config)


def test_every_queue_has_a_ceiling_per_cycle_without_maxpercycle(confdir):
    confdir.write(local_queue("HUGE", confdir.spool, schedplugin="Fixed", executable="/bin/true",
                              **{"sched.fixed.pilotspercycle": str(10**12), "apfqueue.maxpercycle": "7"})
                  + local_queue("PLAIN", confdir.spool, schedplugin="Fixed", executable="/bin/true",
                                **{"sched.fixed.pilotspercycle": "5"}))
    config = confdir.load()
    assert config.queues["PLAIN"].values["apfqueue.maxpercycle"] == 1000  # the documented default
    assert cycle_ceiling(10**12, config.queues["PLAIN"]) == (
        1000, "apfqueue.maxpercycle ceiling: 1000000000000 capped to 1000")
    factory = factory_of(confdir)
    factory.start(cycles=1)
    try:
        queue = factory.queues["HUGE"]
        wait_for(lambda: queue.cycles >= 1, what="one cycle")
        record = queue.last_record
        assert record.submitted == 7 and len(record.ids) == 7, record.message
        assert "apfqueue.maxpercycle ceiling: 1000000000000 capped to 7" in record.message
    finally:
        factory.stop()


# A scheduler plugin that ends its thread the way a careless plugin can: sys.exit() (BaseException).
EXITS = '''
import os
from autopyfactory.config import Key
from autopyfactory.interfaces import SchedulerPlugin

class Exits(SchedulerPlugin):
    name = "Exits"
    keys = {"marker": Key("path", "")}

    def calc(self, n, info):
        if os.path.exists(self.options["marker"]):
            os.unlink(self.options["marker"])
            raise SystemExit("a plugin called sys.exit()")
        return 0, "Exits: 0"
'''


def test_a_dead_queue_thread_is_reported_and_restarted(confdir, tmp_path):
    confdir.dropin("exits.py", EXITS)
    marker = tmp_path / "die"
    marker.touch()
    confdir.write(local_queue("DIES", confdir.spool, schedplugin="Exits",
                              **{"sched.exits.marker": str(marker)})
                  + local_queue("OTHER", confdir.spool))
    factory = factory_of(confdir)
    factory.start()
    waiter = threading.Thread(target=factory.wait, daemon=True)  # the daemon's main thread: supervises
    waiter.start()
    try:
        queue = factory.queues["DIES"]
        died = wait_for(lambda: queue.died, what="the queue thread to die")
        assert died == "SystemExit: a plugin called sys.exit()"
        health = queue.health()
        if queue.died:  # not restarted yet (first restart after 1 s)
            assert health.level == "critical" and "queue thread died (SystemExit" in health.reason, health
        wait_for(lambda: queue.restarts == 1 and queue.alive, what="the thread to be restarted")
        cycles = queue.cycles
        wait_for(lambda: queue.cycles >= cycles + 2, what="the restarted queue to cycle")
        assert queue.health().level == "ok" and queue.died is None
        assert waiter.is_alive() and factory.queues["OTHER"].alive
    finally:
        factory.stop()
        waiter.join(10)
