"""Stand-ins for an HTCondor schedd and collector (none can be installed on these machines).

They stand at the network boundary only: :class:`CondorPool` replaces the
wire calls of the htcondor2 bindings (the ``htcondor2_impl`` functions the
binding objects call with an address where they would open a connection),
so the tests build real ``htcondor2.Collector``, ``htcondor2.Schedd`` and
``htcondor2.Submit`` objects exactly as production does. Behind that
boundary :class:`ScheddDouble` keeps job ClassAds shaped like a real
schedd's (real classad2.ClassAd objects with the attributes a schedd sets),
evaluates constraints with the real ClassAd library, returns only projected
attributes (as a schedd does), and turns the submit description the binding
sends into job ads the way a schedd would (``+Attr`` / ``MY.Attr`` commands,
every macro expanded by the bindings' own submit parser with this cluster
and process).
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import classad2
import htcondor2
import pytest

# attributes a schedd puts on every job ad, whatever the description says
SCHEDD_DEFAULTS = {"MyType": "Job", "TargetType": "Machine", "Owner": "apf", "User": "apf@example.org",
                   "JobUniverse": 5, "NumJobStarts": 0, "JobRunCount": 0}
UNIVERSES = {"vanilla": 5, "grid": 9, "local": 12, "scheduler": 7}


def job_ad(cluster: int, proc: int, status: int, **attrs: Any) -> classad2.ClassAd:
    """A job ClassAd as a schedd keeps it."""
    now = int(time.time())
    ad = classad2.ClassAd({**SCHEDD_DEFAULTS, "ClusterId": cluster, "ProcId": proc, "JobStatus": status,
                           "GlobalJobId": f"schedd.example.org#{cluster}.{proc}#{now}",
                           "QDate": now - 600, "EnteredCurrentStatus": now - 60})
    for key, value in attrs.items():
        ad[key] = value
    return ad


class SubmitResultDouble:
    def __init__(self, cluster: int, count: int):
        self._cluster, self._count = cluster, count

    def cluster(self) -> int:
        return self._cluster

    def num_procs(self) -> int:
        return self._count


class ScheddDouble:
    def __init__(self, jobs: list[classad2.ClassAd] | None = None, history: list[classad2.ClassAd] | None = None):
        self.jobs = list(jobs or [])
        self.history_ads = list(history or [])  # most recent first, like condor_history
        self.calls: list[tuple[str, dict]] = []
        self.fail: Exception | None = None
        self.hang = threading.Event()  # set() to release a hanging call
        self.hanging = False
        self._clusters = itertools.count(1000)
        self._lock = threading.Lock()

    def _enter(self, name: str, **kw: Any) -> None:
        with self._lock:
            self.calls.append((name, kw))
        if self.hanging:
            self.hang.wait(60)
        if self.fail is not None:
            raise self.fail

    def count(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)

    @staticmethod
    def _matches(constraint: Any, ad: classad2.ClassAd) -> bool:
        if constraint is None:
            return True
        return classad2.ExprTree(str(constraint)).eval(ad) is True

    @staticmethod
    def _project(ad: classad2.ClassAd, projection: list[str]) -> classad2.ClassAd:
        if not projection:
            return ad
        wanted = {p.lower() for p in projection}
        return classad2.ClassAd({k: ad[k] for k in ad.keys() if k.lower() in wanted})

    def query(self, constraint: Any = "True", projection: list[str] | None = None, **kw: Any):
        self._enter("query", constraint=str(constraint), projection=list(projection or []))
        return [self._project(ad, projection or []) for ad in self.jobs if self._matches(constraint, ad)]

    def history(self, constraint: Any = None, projection: list[str] | None = None, match: int = -1,
                since: Any = None):
        self._enter("history", constraint=str(constraint), projection=list(projection or []), match=match,
                    since=since)
        out = []
        for ad in self.history_ads:
            if since is not None and self._matches(since, ad):
                break
            if self._matches(constraint, ad):
                out.append(self._project(ad, projection or []))
                if 0 <= match <= len(out):
                    break
        return out

    def submit(self, description: Any, count: int = 0, **kw: Any) -> SubmitResultDouble:
        self._enter("submit", description=dict(description), count=count)
        cluster = next(self._clusters)
        commands = dict(description)
        for proc in range(count or 1):
            # the submit language as the schedd's client expands it for this job
            job = htcondor2.Submit({**commands, "Cluster": str(cluster), "Process": str(proc)})
            attrs: dict[str, Any] = {}
            for key in commands:
                name = key[1:] if key.startswith("+") else key[3:] if key.upper().startswith("MY.") else None
                if name is not None:
                    attrs[name] = classad2.ExprTree(job.expand(key)).eval()
            attrs["JobUniverse"] = UNIVERSES.get(commands.get("universe", "vanilla").lower(), 5)
            for command, attribute in (("grid_resource", "GridResource"), ("executable", "Cmd"),
                                       ("environment", "Environment"), ("output", "Out")):
                if command in commands:
                    attrs[attribute] = job.expand(command)
            self.jobs.append(job_ad(cluster, proc, 1, QDate=int(time.time()), **attrs))
        return SubmitResultDouble(cluster, count or 1)

    def act(self, action: Any, job_spec: Any, reason: str | None = None) -> classad2.ClassAd:
        self._enter("act", action=action, job_spec=str(job_spec), reason=reason)
        done = 0
        for ad in self.jobs:
            if self._matches(job_spec, ad):
                ad["JobStatus"] = 3
                ad["EnteredCurrentStatus"] = int(time.time())
                done += 1
        return classad2.ClassAd({"TotalSuccess": done, "TotalJobAds": done})

    # a schedd double can "run" its idle jobs
    def start_idle(self, limit: int | None = None) -> None:
        for ad in [a for a in self.jobs if a.get("JobStatus") == 1][:limit]:
            ad["JobStatus"] = 2
            ad["JobStartDate"] = int(time.time())


class CondorPool:
    """The network behind the htcondor2 bindings: schedds by address, collectors by ``host:port``.

    ``install(monkeypatch)`` replaces the bindings' wire calls; everything
    above them is the real library. An address nobody listens on fails the
    way the bindings do (HTCondorException).
    """

    VERSION = "$CondorVersion: 24.0.1 2024-10-31 BuildID: 765651 PackageID: 24.0.1-1 $"

    def __init__(self) -> None:
        self.schedds: dict[str, ScheddDouble] = {}  # MyAddress -> schedd
        self.collectors: dict[str, list[classad2.ClassAd]] = {}  # "host:port" -> schedd ads it knows
        self.local_collector = ""  # what COLLECTOR_HOST names ("" = none configured)
        self.connections: list[tuple[str, str]] = []  # (what, address) of every wire call
        self._pools: dict[int, str | None] = {}  # Collector handle -> its pool

    def add_schedd(self, double: ScheddDouble, address: str, name: str = "schedd.example.org",
                   collector: str | None = None) -> classad2.ClassAd:
        """Listen at ``address``; advertise in ``collector`` ("host:port") when given."""
        self.schedds[address] = double
        ad = classad2.ClassAd({"MyType": "Scheduler", "Name": name, "Machine": name, "MyAddress": address,
                               "CondorVersion": self.VERSION, "CondorPlatform": "$CondorPlatform: X86_64-AlmaLinux_9 $"})
        if collector is not None:
            self.collectors.setdefault(collector, []).append(ad)
        return ad

    # ------------------------------------------------------------ schedd wire calls
    def _schedd(self, what: str, addr: str) -> ScheddDouble:
        self.connections.append((what, addr))
        if addr not in self.schedds:
            raise htcondor2.HTCondorException(f"Failed to connect to schedd at {addr}")
        return self.schedds[addr]

    def _query(self, addr, constraint, projection, limit, opts):
        return self._schedd("query", addr).query(constraint=constraint or "True", projection=projection)

    def _history(self, addr, constraint, projection, match, since, ad_type, src, command):
        return self._schedd("history", addr).history(
            constraint=constraint or None, projection=projection.split(",") if projection else [],
            match=match, since=since or None)

    def _submit(self, addr, handle, count, spool):
        sent = htcondor2.Submit.__new__(htcondor2.Submit)  # a view of the description the binding sends
        sent._handle = handle
        result = self._schedd("submit", addr).submit(sent, count=count)
        return htcondor2.SubmitResult(result.cluster(), 0, result.num_procs(), classad2.ClassAd(), None)

    def _act(self, addr, job_spec, action, reason, reason_code):
        answer = self._schedd("act", addr).act(action, job_spec, reason=reason)
        return {"result_total_0": 0, "result_total_1": answer["TotalSuccess"], "result_total_2": 0,
                "result_total_3": 0, "result_total_4": 0, "result_total_5": 0,
                "TotalJobAds": answer["TotalJobAds"], "ActionResult": answer["TotalSuccess"]}

    # ------------------------------------------------------------ collector wire calls
    def _collector_init(self, collector, handle, pool, token):
        collector.default = pool is None
        self._pools[id(handle)] = pool

    def _collector_ads(self, handle) -> list[classad2.ClassAd]:
        pool = self._pools.get(id(handle)) or self.local_collector
        self.connections.append(("collector", pool))
        if pool not in self.collectors:
            raise htcondor2.HTCondorException(f"Failed to connect to collector {pool or '(none configured)'}")
        return self.collectors[pool]

    def _collector_query(self, handle, ad_type, constraint, projection, statistics, name):
        wanted = classad2.ExprTree(str(constraint) if constraint not in ("", None) else "True")
        return [ad for ad in self._collector_ads(handle) if wanted.eval(ad) is True]

    def _collector_locate_local(self, collector, handle, daemon_type):
        ads = self._collector_ads(handle)
        if not ads:
            raise htcondor2.HTCondorException("Unable to find local daemon")
        return ads[0]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> CondorPool:
        import htcondor2._collector as collector_module
        import htcondor2._schedd as schedd_module

        for name, double in (("_schedd_query", self._query), ("_history_query", self._history),
                             ("_schedd_submit", self._submit), ("_schedd_act_on_job_constraint", self._act)):
            monkeypatch.setattr(schedd_module, name, double)
        for name, double in (("_collector_init", self._collector_init), ("_collector_query", self._collector_query),
                             ("_collector_locate_local", self._collector_locate_local)):
            monkeypatch.setattr(collector_module, name, double)
        return self

