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
