"""The Condor WMS plugin (glideinWMS-style pull) against a schedd double.

No schedd can run on a test machine: the double has the htcondor2 bindings'
``Schedd.query`` interface, holds ClassAds made with the real ``classad2``
module and evaluates the plugin's constraint with ``classad2`` itself, so a
wrong constraint fails these tests. It is injected at one boundary: the pool
object the plugin takes from ``context.shared(pool_key(pool, schedd))``.
"""

from __future__ import annotations

import threading
import time

import classad2
import htcondor2
import pytest

from autopyfactory.context import FactoryContext
from autopyfactory.factory import Factory
from autopyfactory.info import WMSQueueInfo
from autopyfactory.plugins.wmsstatus.condor import Condor, HTCondorPool, pool_key
from tests.conftest import local_queue, wait_for


class ScheddDouble:
    """Answers ``query`` like htcondor2.Schedd, from real ClassAds."""

    def __init__(self, jobs: list[dict]):
        self.ads = [classad2.ClassAd(job) for job in jobs]
        self.queries: list[tuple[str, list[str]]] = []
        self.error: Exception | None = None
        self.hang = threading.Event()
        self.hanging = False

    def query(self, constraint="True", projection=(), callback=None, limit=-1, opts=None):
        self.queries.append((str(constraint), list(projection)))
        if self.error is not None:
            raise self.error
        if self.hanging:
            self.hang.wait(30)
        expr = classad2.ExprTree(str(constraint))
        matched = [ad for ad in self.ads if expr.eval(ad) is True]
        if projection:
            matched = [classad2.ClassAd({k: ad[k] for k in projection if k in ad}) for ad in matched]
        return matched


class PoolDouble:
    def __init__(self, *schedds: ScheddDouble):
        self.list = list(schedds)

    def schedds(self):
        return self.list


def job(status: int, sites: str | None = "SITE_A", **extra) -> dict:
    ad = {"JobStatus": status, "Owner": "alice", **extra}
    if sites is not None:
        ad["DESIRED_Sites"] = sites
    return ad


JOBS = [
    job(1), job(1), job(1),  # idle -> ready
    job(2), job(2),  # running
    job(5),  # held -> notready
    job(4), job(3),  # completed, removed: not work
    job(1, "SITE_B, SITE_A"),  # may run at either: counts for both
    job(1, None),  # no site: nobody's work
    job(1, "SITE_C", Owner="apf"),  # a pilot-ish job, excluded by the extra constraint in one test
]


def make_plugin(confdir, pool, **options) -> Condor:
    confdir.write(local_queue("q", confdir.spool))
    config = confdir.load()
    context = FactoryContext(config)
    values = {k: key.default for k, key in Condor.keys.items()} | options
    context.shared(pool_key(values["pool"], values["schedd"]), lambda: pool)
    return Condor(values, context)


def test_idle_jobs_are_ready_work_per_queue_attribute(confdir):
    schedd = ScheddDouble(JOBS)
    plugin = make_plugin(confdir, PoolDouble(schedd))
    result = plugin.poll(["SITE_A", "SITE_B", "SITE_C", "SITE_D"])
    assert result["SITE_A"] == WMSQueueInfo(ready=4, running=2, notready=1)
    assert result["SITE_B"] == WMSQueueInfo(ready=1)
    assert result["SITE_C"] == WMSQueueInfo(ready=1)
    assert result["SITE_D"] == WMSQueueInfo()  # the pool answered for every job: zero is known
    constraint, projection = schedd.queries[0]
    assert "DESIRED_Sites isnt undefined" in constraint
    assert projection == ["DESIRED_Sites", "JobStatus"]


def test_configurable_attribute_extra_constraint_and_several_schedds(confdir):
    first = ScheddDouble([job(1, None, APF_Target="Q1"), job(1, None, APF_Target="Q1", Owner="apf")])
    second = ScheddDouble([job(1, None, APF_Target="Q1"), job(2, None, APF_Target="Q2")])
    plugin = make_plugin(confdir, PoolDouble(first, second), queueattr="APF_Target",
                         constraint='Owner =!= "apf"')
    result = plugin.poll(["Q1", "Q2"])
    assert result == {"Q1": WMSQueueInfo(ready=2), "Q2": WMSQueueInfo(running=1)}


def test_bad_attribute_name_is_refused(confdir):
    plugin = make_plugin(confdir, PoolDouble(ScheddDouble(JOBS)), queueattr="x) || (true")
    with pytest.raises(ValueError, match="not a ClassAd attribute name"):
        plugin.poll(["SITE_A"])


def test_failing_schedd_fails_the_whole_poll(confdir):
    good, bad = ScheddDouble(JOBS), ScheddDouble(JOBS)
    bad.error = htcondor2.HTCondorException("Failed to connect to schedd")
    plugin = make_plugin(confdir, PoolDouble(good, bad))
    with pytest.raises(htcondor2.HTCondorException):
        plugin.poll(["SITE_A"])


def test_hanging_schedd_times_out(confdir):
    schedd = ScheddDouble(JOBS)
    schedd.hanging = True
    plugin = make_plugin(confdir, PoolDouble(schedd), timeout=0.3)
    with pytest.raises(TimeoutError, match="no answer within"):
        plugin.poll(["SITE_A"])
    with pytest.raises(TimeoutError, match="still not returned"):
        plugin.poll(["SITE_A"])
    assert len(schedd.queries) == 1  # no pile-up of stuck queries
    schedd.hang.set()


def test_real_bindings_without_a_collector_fail_cleanly():
    with pytest.raises(htcondor2.HTCondorException):
        HTCondorPool("127.0.0.1:9").schedds()


def test_factory_with_condor_wms_submits_stops_and_resumes(confdir):
    schedd = ScheddDouble([job(1, "CONDOR_SITE"), job(1, "CONDOR_SITE")])
    queues = (
        "[CQ]\nwmsqueue = CONDOR_SITE\nwmsstatusplugin = Condor\nwmsstatus.condor.timeout = 0.5\n"
        "batchstatusplugin = Local\nbatchsubmitplugin = Local\nexecutable = /bin/true\n"
        "apfqueue.sleep = 0.2\nschedplugin = Ready\n\n"
    )
    confdir.write(queues, factory="wmsstatus.condor.sleep = 0.2\nwmsstatus.condor.maxage = 1.5\n"
                                  "wmsstatus.condor.breakercooldown = 0.5\n")
    config = confdir.load()
    factory = Factory(config)
    factory.context.shared(pool_key("", ""), lambda: PoolDouble(schedd))  # the one injection boundary
    records = []
    factory.listeners.append(lambda queue, record: records.append(record))
    factory.start()
    try:

        wait_for(lambda: any(r.submitted > 0 for r in records), what="a submission for idle jobs")
        assert records[-1].wms is None or records[-1].wms["ready"] == 2
        broke = time.time()
        schedd.error = htcondor2.HTCondorException("Failed to fetch ads from schedd")
        unknown = lambda: [r for r in list(records) if r.started >= broke and r.wms is None]  # noqa: E731
        wait_for(lambda: len(unknown()) >= 3, what="cycles with unknown status")
        assert all(r.submitted == 0 for r in unknown())
        assert any("Failed to fetch ads from schedd" in r.message and "Condor" in r.message for r in unknown())
        fixed = time.time()
        schedd.error = None
        wait_for(lambda: any(r.submitted > 0 for r in list(records) if r.started >= fixed), what="submissions again")
        assert factory.queues["CQ"].alive
    finally:
        factory.stop(timeout=10)
