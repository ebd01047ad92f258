"""A stand-in for an htcondor2.Schedd (no schedd can be installed on these machines).

It keeps job ClassAds shaped like a real schedd's (real classad2.ClassAd
objects with the attributes a schedd sets), evaluates constraints with the
real ClassAd library, returns only projected attributes (as a schedd does),
and turns a real htcondor2.Submit into job ads the way a schedd would
(``+Attr`` / ``MY.Attr`` commands, ``$(Cluster)`` / ``$(Process)`` expanded).
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import classad2

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
            attrs: dict[str, Any] = {}
            for key, value in commands.items():
                name = key[1:] if key.startswith("+") else key[3:] if key.upper().startswith("MY.") else None
                if name is None:
                    continue
                text = value.replace("$(Cluster)", str(cluster)).replace("$(Process)", str(proc))
                attrs[name] = classad2.ExprTree(text).eval()
            attrs["JobUniverse"] = UNIVERSES.get(commands.get("universe", "vanilla").lower(), 5)
            if "grid_resource" in commands:
                attrs["GridResource"] = commands["grid_resource"]
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
