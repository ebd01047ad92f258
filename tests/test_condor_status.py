"""HTCondor batch status: real htcondor2 Collector/Schedd objects, a schedd double (tests/condordouble.py) behind them."""

from __future__ import annotations

import time
from types import SimpleNamespace

import htcondor2
import pytest

from autopyfactory.commands import CallTimeout
from autopyfactory.context import FactoryContext
from autopyfactory.factory import Factory
from autopyfactory.plugins.batchstatus.condor import PROJECTION, Condor
from tests.condordouble import CondorPool, ScheddDouble, job_ad
from tests.conftest import ConfDir, wait_for

FID = "fac-A"


def mine(queue: str, wms: str, **extra):
    return {"APF_FACTORY": FID, "APF_QUEUE": queue, "MATCH_APF_QUEUE": queue, "APF_WMSQUEUE": wms, **extra}


SCHEDD = "<192.0.2.10:9618>"


def plugin(pool: CondorPool, double: ScheddDouble, wms: dict[str, str], timeout: float = 5.0,
           monitored: tuple[str, ...] = (), **options) -> Condor:
    """A Condor status plugin whose schedd is ``double``: the local one, unless ``options`` address another;
    ``monitored`` queues have a monitor (``monitorsection``)."""
    pool.local_collector = "cm.example.org:9618"
    pool.add_schedd(double, SCHEDD, collector=pool.local_collector)
    queues = {q: SimpleNamespace(wmsqueue=w, values={"monitorsection": ["apfmon"] if q in monitored else []})
              for q, w in wms.items()}
    context = SimpleNamespace(factory_id=FID, config=SimpleNamespace(queues=queues))
    return Condor({"scheddhost": "", "scheddport": None, "collectorhost": "", "collectorport": 9618,
                   "timeout": timeout, **options}, context)


def test_counts_states_peers_and_history(condor_pool: CondorPool):
    now = int(time.time())
    jobs = [
        job_ad(1, 0, 1, **mine("q1", "W1")),  # idle
        job_ad(1, 1, 5, HoldReason="proxy expired", **mine("q1", "W1")),  # held
        job_ad(1, 2, 2, JobStartDate=now - 100, **mine("q1", "W1")),  # running
        job_ad(1, 3, 6, JobStartDate=now - 100, **mine("q1", "W1")),  # transferring output
        job_ad(1, 4, 4, JobStartDate=now - 100, CompletionDate=now - 10, ExitCode=0, ExitBySignal=False,
               **mine("q1", "W1")),  # completed, still in the queue
        job_ad(2, 0, 1, **mine("q2", "W2")),
        job_ad(2, 1, 3, EnteredCurrentStatus=now - 5, **mine("q2", "W2")),  # removed while idle: not a fault
        # another factory on W1: a peer of q1
        job_ad(3, 0, 1, QDate=now - 30, **{**mine("theirs", "W1"), "APF_FACTORY": "fac-B"}),
        job_ad(3, 1, 2, QDate=now - 300, JobStartDate=now - 60, **{**mine("theirs", "W1"), "APF_FACTORY": "fac-B"}),
        # an APF 2.4 factory: only FACTORY_JOBID and MATCH_APF_QUEUE
        job_ad(4, 0, 1, FACTORY_JOBID="old-apf#4.0", MATCH_APF_QUEUE="W2"),
        # unrelated jobs on the schedd
        job_ad(9, 0, 1, Cmd="/bin/other"),
        job_ad(9, 1, 2, APF_FACTORY="fac-C", APF_WMSQUEUE="ELSEWHERE"),
    ]
    history = [
        job_ad(0, 0, 4, JobStartDate=now - 900, CompletionDate=now - 600, EnteredCurrentStatus=now - 600,
               ExitCode=3, ExitBySignal=False, **mine("q1", "W1")),
        job_ad(0, 1, 4, JobStartDate=now - 900, CompletionDate=now - 700, EnteredCurrentStatus=now - 700,
               ExitBySignal=True, ExitSignal=9, **mine("q2", "W2")),
        job_ad(0, 2, 4, JobStartDate=now - 9000, CompletionDate=now - 7200, EnteredCurrentStatus=now - 7200,
               ExitCode=0, ExitBySignal=False, **mine("q1", "W1")),  # more than an hour ago: left out
    ]
    double = ScheddDouble(jobs, history)
    info = plugin(condor_pool, double, {"q1": "W1", "q2": "W2"}).poll(["q1", "q2", "q3"])
    q1, q2, q3 = info["q1"], info["q2"], info["q3"]
    assert (q1.pending, q1.held, q1.running, q1.done, q1.fault) == (2, 1, 2, 1, 1)
    assert (q2.pending, q2.running, q2.done, q2.fault) == (1, 0, 0, 1)
    assert (q3.pending, q3.running, q3.done, q3.fault) == (0, 0, 0, 0)
    fault = next(p for p in q1.finished if p.state == "fault")
    assert fault.jobid == "0.0" and fault.exitcode == 3 and fault.runtime == 300
    assert next(p for p in q2.finished if p.state == "fault").exitcode == 137
    assert {p.jobid: p.state for p in q2.finished}["2.1"] == "removed"
    # start - QDate of the pilots that started in the last hour (QDate is now - 600 unless set)
    assert sorted(q1.queue_waits) == [0, 500, 500, 500] and q2.queue_waits == (0,) and q3.queue_waits == ()
    # each with its start time (JobStartDate), so that Backlog can take the waits of the last minutes only
    assert sorted(zip(q1.queue_wait_starts, q1.queue_waits, strict=True)) == [(now - 900, 0)] + [(now - 100, 500)] * 3
    assert q2.queue_wait_starts == (now - 900,) and q3.queue_wait_starts == ()
    assert q1.peers == {"fac-B": {"pending": 1, "running": 1, "submitted_last": float(now - 30)}}
    assert q2.peers["old-apf"]["pending"] == 1
    # one query and one history call for every queue; projection limited; history bounded to the hour
    assert double.count("query") == 1 and double.count("history") == 1
    query = [kw for name, kw in double.calls if name == "query"][0]
    assert query["projection"] == PROJECTION
    history_call = [kw for name, kw in double.calls if name == "history"][0]
    assert "EnteredCurrentStatus >=" in history_call["constraint"] and "EnteredCurrentStatus <" in history_call["since"]


def test_pilots_leaving_the_queue_are_running_and_shown_as_exiting(condor_pool: CondorPool):
    now = int(time.time())
    jobs = [
        job_ad(1, 0, 2, JobStartDate=now - 100, **mine("q1", "W1")),  # running
        job_ad(1, 1, 6, JobStartDate=now - 100, **mine("q1", "W1")),  # transferring output
        job_ad(1, 2, 3, JobStartDate=now - 100, EnteredCurrentStatus=now - 2, **mine("q1", "W1")),  # removed, leaving
        job_ad(1, 3, 3, EnteredCurrentStatus=now - 2, **mine("q1", "W1")),  # removed before it started
        job_ad(1, 4, 1, **mine("q1", "W1")),  # idle
    ]
    history = [  # removed after it ran, and gone from the queue: finished, not exiting
        job_ad(0, 0, 3, JobStartDate=now - 900, EnteredCurrentStatus=now - 600, **mine("q1", "W1")),
    ]
    q1 = plugin(condor_pool, ScheddDouble(jobs, history), {"q1": "W1"}, monitored=("q1",)).poll(["q1"])["q1"]
    assert (q1.pending, q1.running, q1.exiting) == (1, 3, 2)
    assert {p.jobid: p.state for p in q1.finished} == {"1.3": "removed", "0.0": "done"}
    assert q1.active == {"1.0": "running", "1.1": "exiting", "1.2": "exiting"}  # by batch id, for APFMon
    unwatched = plugin(condor_pool, ScheddDouble(jobs, history), {"q1": "W1"}).poll(["q1"])["q1"]
    assert (unwatched.running, unwatched.exiting, unwatched.active) == (3, 2, {})  # no monitor: no ids kept


def test_constraint_keeps_out_other_jobs(condor_pool: CondorPool):
    double = ScheddDouble([job_ad(9, 0, 1, Cmd="/bin/other"), job_ad(9, 1, 2, APF_FACTORY="fac-C",
                                                                     APF_WMSQUEUE="ELSEWHERE")])
    plugin(condor_pool, double, {"q1": "W1"}).poll(["q1"])
    constraint = double.calls[0][1]["constraint"]
    assert not any(double._matches(constraint, ad) for ad in double.jobs)
    assert double._matches(constraint, job_ad(1, 0, 1, FACTORY_JOBID=f"{FID}#1.0"))
    assert not double._matches(constraint, job_ad(1, 0, 1, FACTORY_JOBID="fac-AB#1.0"))


def test_schedd_failure_is_unknown(condor_pool: CondorPool):
    double = ScheddDouble()
    double.fail = htcondor2.HTCondorException("Failed to fetch ads from schedd")
    with pytest.raises(htcondor2.HTCondorException):
        plugin(condor_pool, double, {"q": "q"}).poll(["q"])


def test_hung_schedd_times_out(condor_pool: CondorPool):
    double = ScheddDouble()
    double.hanging = True
    try:
        with pytest.raises(CallTimeout):
            plugin(condor_pool, double, {"q": "q"}, timeout=1.0).poll(["q"])
    finally:
        double.hang.set()


def test_factory_loop_with_two_condor_queues_and_one_schedd(confdir: ConfDir, condor_pool: CondorPool):
    """Submit through CondorLocal, see the pilots through Condor status: one poller for both queues."""
    double = ScheddDouble()
    condor_pool.local_collector = "cm.example.org:9618"
    condor_pool.add_schedd(double, SCHEDD, collector=condor_pool.local_collector)
    queues = ""
    for name in ("CA", "CB"):
        queues += (f"[{name}]\nwmsstatusplugin = Local\nwmsstatus.local.spooldir = {confdir.spool}\n"
                   "batchstatusplugin = Condor\nbatchsubmitplugin = CondorLocal\napfqueue.sleep = 0.3\n"
                   "schedplugin = Ready\n\n")
        confdir.work(name, 3)
    confdir.write(queues, factory="batchstatus.condor.sleep = 0.2\n")
    config = confdir.load()
    factory = Factory(config)
    factory.start()
    try:
        def pending():
            infos = [factory.queues[q].batch_status()[0] for q in ("CA", "CB")]
            assert all(i is not None and i.pending == 3 for i in infos), infos
            return True

        wait_for(pending, what="3 pilots pending in each queue")
        # a few more cycles: Ready sees 3 ready - 3 pending and submits nothing more
        cycles = {q: factory.queues[q].cycles for q in ("CA", "CB")}
        wait_for(lambda: all(factory.queues[q].cycles >= n + 3 for q, n in cycles.items()), what="3 more cycles")
        pollers = [p for (kind, _), p in factory.status.pollers.items() if kind == "batchstatus"]
    finally:
        factory.stop()
    assert len(double.jobs) == 6 and double.count("submit") == 2
    assert len(pollers) == 1 and double.count("query") == pollers[0].calls


# ---------------------------------------------------------------- how the schedd is found (real binding objects)


def test_direct_schedd_address_is_polled_and_submitted_to(condor_pool: CondorPool, confdir: ConfDir):
    """scheddhost + scheddport: htcondor2.Schedd built from our own location ad, no collector asked."""
    far = ScheddDouble([job_ad(1, 0, 1, **mine("q", "W"))])
    condor_pool.add_schedd(far, "<schedd.example.org:9619>")
    status = plugin(condor_pool, ScheddDouble(), {"q": "W"}, scheddhost="schedd.example.org", scheddport=9619)
    assert status.poll(["q"])["q"].pending == 1
    assert far.count("query") == 1 and far.count("history") == 1
    assert {what for what, _ in condor_pool.connections} == {"query", "history"}  # no collector
    assert {address for _, address in condor_pool.connections} == {"<schedd.example.org:9619>"}

    # submission takes the same way to the same schedd
    confdir.write(f"[q]\nwmsstatusplugin = Local\nwmsstatus.local.spooldir = {confdir.spool}\n"
                  "batchstatusplugin = Condor\nbatchsubmitplugin = CondorLocal\n"
                  "batchstatus.condor.scheddhost = schedd.example.org\nbatchstatus.condor.scheddport = 9619\n")
    config = confdir.load()
    context = FactoryContext(config)
    result = context.registry.get("batchsubmit", "CondorLocal")(config.queues["q"], context).submit(2)
    assert result.error is None and result.count == 2 and far.count("submit") == 1


def test_named_schedd_is_located_through_the_collector(condor_pool: CondorPool):
    other, wanted = ScheddDouble(), ScheddDouble([job_ad(1, 0, 2, **mine("q", "W"))])
    condor_pool.add_schedd(other, "<192.0.2.20:9618>", name="other.example.org", collector="cm.example.org:9620")
    condor_pool.add_schedd(wanted, "<192.0.2.21:9618>", name="ce.example.org", collector="cm.example.org:9620")
    status = plugin(condor_pool, ScheddDouble(), {"q": "W"}, scheddhost="ce.example.org",
                    collectorhost="cm.example.org", collectorport=9620)
    assert status.poll(["q"])["q"].running == 1
    assert wanted.count("query") == 1 and other.count("query") == 0
    assert ("collector", "cm.example.org:9620") in condor_pool.connections


def test_schedd_unknown_to_the_collector_is_an_error_not_the_local_schedd(condor_pool: CondorPool):
    local = ScheddDouble([job_ad(1, 0, 1, **mine("q", "W"))])
    condor_pool.collectors["cm.example.org:9618"] = []
    status = plugin(condor_pool, local, {"q": "W"}, scheddhost="gone.example.org", collectorhost="cm.example.org")
    with pytest.raises(LookupError, match="knows no schedd gone.example.org"):
        status.poll(["q"])
    assert local.count("query") == 0


def test_unreachable_direct_schedd_is_unknown(condor_pool: CondorPool):
    status = plugin(condor_pool, ScheddDouble(), {"q": "W"}, scheddhost="down.example.org", scheddport=9618)
    with pytest.raises(htcondor2.HTCondorException, match="Failed to connect to schedd at <down.example.org:9618>"):
        status.poll(["q"])


def test_constraint_matches_our_factory_id_literally(condor_pool: CondorPool):
    """The factory id goes into a ClassAd regexp escaped: dots, plus signs and dashes are themselves."""
    import classad2

    fid = "fac.tory-1+x"
    p = plugin(condor_pool, ScheddDouble(), {"q": "q"})
    p.context.factory_id = fid
    expr = classad2.ExprTree(p.constraint([]))
    assert expr.eval(classad2.ClassAd({"FACTORY_JOBID": f"{fid}#5.0"})) is True
    assert expr.eval(classad2.ClassAd({"FACTORY_JOBID": "facXtory-1+x#5.0"})) is False
    assert expr.eval(classad2.ClassAd({"FACTORY_JOBID": "fac.tory-1x#5.0"})) is False


def test_held_pilots_are_listed_with_their_hold_reason(condor_pool: CondorPool):
    """The operator's list of a queue's pilots (``list_pilots``): one query constrained to this factory's queue,
    held ones with HTCondor's HoldReason, which the poll also sums per queue (``reasons``)."""
    now = int(time.time())
    jobs = [
        job_ad(1, 0, 1, QDate=now - 50, **mine("q1", "W1")),  # idle
        job_ad(1, 1, 5, QDate=now - 40, HoldReason="Error from slot1@wn: proxy expired", **mine("q1", "W1")),
        job_ad(1, 2, 5, QDate=now - 30, HoldReason="Error from slot1@wn: proxy expired", **mine("q1", "W1")),
        job_ad(1, 3, 2, QDate=now - 200, JobStartDate=now - 100, **mine("q1", "W1")),  # running
        job_ad(1, 4, 6, QDate=now - 200, JobStartDate=now - 100, **mine("q1", "W1")),  # transferring output
        job_ad(2, 0, 5, HoldReason="another queue's", **mine("q2", "W1")),
        job_ad(3, 0, 5, HoldReason="another factory's", **{**mine("q1", "W1"), "APF_FACTORY": "fac-B"}),
    ]
    double = ScheddDouble(jobs, [])
    condor = plugin(condor_pool, double, {"q1": "W1", "q2": "W1"})
    listed = {p.jobid: p for p in condor.list_pilots("q1")}
    assert {j: p.state for j, p in listed.items()} == {"1.0": "pending", "1.1": "held", "1.2": "held",
                                                       "1.3": "running", "1.4": "exiting"}
    assert listed["1.1"].reason == "Error from slot1@wn: proxy expired" and listed["1.0"].reason == ""
    assert listed["1.3"].start == now - 100 and listed["1.0"].submitted == now - 50
    query = [kw for name, kw in double.calls if name == "query"][-1]
    assert not double._matches(query["constraint"], jobs[5]) and not double._matches(query["constraint"], jobs[6])
    q1 = condor.poll(["q1", "q2"])["q1"]
    assert q1.reasons == {"Error from slot1@wn: proxy expired": 2}
