"""Drop-in plugin sources the core tests install into a plugin directory.

They are real drop-ins: files the registry loads from ``plugindirs``.
"""

# WMS status read from a JSON file the test rewrites; "fail" makes the poll raise.
FILE_WMS = '''
import json
from autopyfactory.config import Key
from autopyfactory.info import WMSQueueInfo
from autopyfactory.interfaces import WMSStatusPlugin

class FileWMS(WMSStatusPlugin):
    """Reads {wmsqueue: ready} from wmsstatus.filewms.path."""
    name = "FileWMS"
    keys = {"path": Key("path", "")}
    endpoint_keys = ("path",)

    def poll(self, queues):
        with open(self.options["path"]) as handle:
            data = json.load(handle)
        if data == "fail":
            raise RuntimeError("WMS endpoint answered 500")
        return {q: WMSQueueInfo(ready=data[q]) for q in queues if q in data}
'''

# A scheduler plugin that always raises.
BOOM = '''
from autopyfactory.interfaces import SchedulerPlugin

class Boom(SchedulerPlugin):
    name = "Boom"

    def calc(self, n, info):
        raise ZeroDivisionError("boom")
'''

# Local batch status that answers slowly: an answer started before a submission
# arrives after it, which is exactly when double submission would happen.
SLOW_BATCH = '''
import time
from autopyfactory.config import Key
from autopyfactory.plugins.batchstatus.local import Local

class SlowLocal(Local):
    name = "SlowLocal"
    keys = {"delay": Key("float", 0.5)}

    def poll(self, queues):
        time.sleep(self.options["delay"])
        return super().poll(queues)
'''

# Local batch submission that records when it was asked to prepare and says when the "batch
# system" answered: a stamp taken inside submit, before the bookkeeping that follows it.
STAMPED_SUBMIT = '''
import dataclasses
import time
from autopyfactory.plugins.batchsubmit.local import Local

class StampedLocal(Local):
    name = "StampedLocal"
    prepared = []  # (called at, for when, queue)
    answered = []

    def prepare(self, when):
        StampedLocal.prepared.append((time.time(), when, self.queue.name))

    def submit(self, n):
        result = super().submit(n)
        accepted = time.time() - 1000.0  # far from any time the queue could take itself
        StampedLocal.answered.append(accepted)
        time.sleep(0.05)  # bookkeeping after the answer
        return dataclasses.replace(result, accepted_at=accepted)
'''
