"""The HTCondor WMS (glideinWMS-style pull model): user jobs waiting in a pool.

Idle user jobs in the pool's schedds are the ready work of the factory queue
whose WMS queue name their ``queueattr`` attribute carries; the factory sends
pilots (glideins) that join the pool and run them. Queried with the htcondor2
bindings (PyPI ``htcondor``); every schedd query runs under a timeout.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from typing import Any, Protocol

from autopyfactory.commands import TimedCaller
from autopyfactory.config import Key
from autopyfactory.info import WMSQueueInfo
from autopyfactory.interfaces import WMSStatusPlugin
from autopyfactory.plugins.batchstatus.condor import CONDOR_REQUIRES

# HTCondor JobStatus -> WMSQueueInfo field. 1 idle, 2 running, 5 held (waits for
# an operator, so not ready for a pilot); removed/completed jobs are not work.
JOB_STATUS: dict[int, str] = {1: "ready", 2: "running", 5: "notready"}

ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class Schedd(Protocol):
    """What the plugin uses of ``htcondor2.Schedd`` (a schedd double provides the same)."""

    def query(self, constraint: str = "True", projection: list[str] = ..., **kwargs: Any) -> list[Any]: ...


class HTCondorPool:
    """The real pool: schedds located through the collector with the htcondor2 bindings.

    This is the one boundary tests replace (no schedd can run on a test
    machine): the plugin takes its pool object from ``context.shared(pool_key(...))``,
    so a test puts a double with the same ``schedds()`` method there first.
    """

    def __init__(self, pool: str = "", schedd: str = ""):
        self.pool = pool
        self.schedd = schedd

    def schedds(self) -> list[Schedd]:
        import htcondor2

        collector = htcondor2.Collector(self.pool or None)
        if self.schedd:
            ads = [collector.locate(htcondor2.DaemonType.Schedd, self.schedd)]
        else:
            ads = collector.locateAll(htcondor2.DaemonType.Schedd)
        return [htcondor2.Schedd(ad) for ad in ads]


def pool_key(pool: str, schedd: str) -> tuple[str, str, str]:
    """Key of the shared pool object in the factory context."""
    return ("htcondor-pool", pool or "", schedd or "")


class Condor(WMSStatusPlugin):
    """Jobs waiting in an HTCondor pool, per WMS queue named by a job attribute.

    Keys (``wmsstatus.condor.*``; all but ``timeout`` identify the endpoint):

    - ``pool``: collector ``host[:port]``; default: the local HTCondor configuration.
    - ``schedd``: name of one schedd; default: every schedd the collector knows.
    - ``queueattr`` (``DESIRED_Sites``): job attribute naming the WMS queue(s) a job
      may run at; a comma list counts the job for each queue it names.
    - ``constraint``: extra ClassAd constraint selecting user jobs (e.g. ``Owner =!= "apf"``).
    - ``timeout`` (60 s): limit for locating the schedds and for each schedd query.

    Returns {wmsqueue: WMSQueueInfo} for every queue asked: idle jobs -> ready,
    running -> running, held -> notready; a queue with no jobs has zeros (the
    pool answered about every job). Any failing or slow schedd fails the whole
    poll (unknown, never a partial count).
    """

    name = "Condor"
    requires = CONDOR_REQUIRES
    keys = {
        "pool": Key("str", "", help="collector host[:port] (default: local HTCondor configuration)"),
        "schedd": Key("str", "", help="one schedd name (default: all schedds of the pool)"),
        "queueattr": Key("str", "DESIRED_Sites", help="job attribute naming the WMS queue"),
        "constraint": Key("str", "", help="extra ClassAd constraint for user jobs"),
        "timeout": Key("float", 60.0, min=0.1, help="seconds for each query"),
    }
    endpoint_keys = ("pool", "schedd", "queueattr", "constraint")
    name_keys = ("pool", "schedd")
    default_sleep = 60.0
    default_maxage = 600.0

    def __init__(self, options: dict[str, Any], context):
        super().__init__(options, context)
        pool, schedd = options["pool"], options["schedd"]
        self.pool = context.shared(pool_key(pool, schedd), lambda: HTCondorPool(pool, schedd))
        self._call = TimedCaller(f"condor:{pool or 'local'}")

    def constraint(self) -> str:
        attr = self.options["queueattr"]
        if not ATTRIBUTE.match(attr):
            raise ValueError(f"wmsstatus.condor.queueattr is not a ClassAd attribute name: {attr!r}")
        states = " || ".join(f"JobStatus == {code}" for code in sorted(JOB_STATUS))
        text = f"({attr} isnt undefined) && ({states})"
        extra = self.options["constraint"].strip()
        return f"{text} && ({extra})" if extra else text

    def poll(self, queues: Collection[str]) -> dict[str, WMSQueueInfo]:
        attr = self.options["queueattr"]
        constraint = self.constraint()
        timeout = self.options["timeout"]
        wanted = set(queues)
        counts = {q: {"notready": 0, "ready": 0, "running": 0} for q in wanted}
        deadline = time.monotonic() + timeout
        schedds = self._call(self.pool.schedds, timeout)
        for schedd in schedds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"pool query not complete within {timeout:g}s")
            ads = self._call(lambda s=schedd: s.query(constraint=constraint, projection=[attr, "JobStatus"]), left)
            for ad in ads:
                field = JOB_STATUS.get(ad.get("JobStatus"))
                names = ad.get(attr)
                if field is None or not isinstance(names, str):
                    continue
                for name in {n.strip() for n in names.split(",")}:
                    if name in wanted:
                        counts[name][field] += 1
        return {q: WMSQueueInfo(**c) for q, c in counts.items()}
