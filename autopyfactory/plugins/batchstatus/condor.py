"""Status of the pilots in an HTCondor schedd, through the htcondor2 bindings.

One ``Schedd.query`` per interval per schedd (constrained to this factory's
pilots and other factories' pilots of the same WMS queues, projection limited
to the attributes below), plus the schedd's history bounded to the last hour
for the pilots that have left the queue. Every bindings call has a timeout.

Pilot attributes (set by the Condor submit plugins): ``APF_FACTORY``,
``APF_QUEUE`` / ``MATCH_APF_QUEUE`` (factory queue), ``APF_WMSQUEUE``,
``FACTORY_JOBID`` (``<factoryId>#<cluster>.<proc>``). Pilots of APF 2.4
factories, which carry only FACTORY_JOBID and MATCH_APF_QUEUE, are
attributed from those.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection, Iterable
from typing import Any

from autopyfactory import commands
from autopyfactory.config import Key
from autopyfactory.info import (
    MAX_LISTED_PILOTS,
    BatchQueueInfo,
    FinishedPilot,
    LivePilot,
    ended_state,
)
from autopyfactory.interfaces import BatchStatusPlugin
from autopyfactory.plugins.batchstatus._tally import (
    LIVE_STATES,
    Tally,
    monitored_queues,
    wms_queues,
)

log = logging.getLogger(__name__)

HISTORY_WINDOW = 3600.0
# the HTCondor bindings are an extra: every Condor plugin names them
CONDOR_REQUIRES = {"htcondor2": "install it with pip install 'autopyfactory[condor]' "
                                "(EL10 RPM: dnf install python3-condor, from HTCondor's repository; "
                                "the EL9 RPM carries them)"}
HISTORY_LIMIT = 100_000
PROJECTION = [
    "ClusterId", "ProcId", "JobStatus", "APF_FACTORY", "APF_QUEUE", "MATCH_APF_QUEUE", "APF_WMSQUEUE",
    "FACTORY_JOBID", "QDate", "JobStartDate", "EnteredCurrentStatus", "CompletionDate", "ExitCode",
    "ExitBySignal", "ExitSignal", "HoldReason",
]

# HTCondor JobStatus -> pilot state. Source: HTCondor manual, "Job ClassAd
# Attributes", JobStatus; the table in docs/semantics.md (held is
# pending and shown apart; completed is told apart by exit code).
CONDOR_STATES: dict[int, str] = {
    1: "pending",  # Idle
    2: "running",  # Running
    3: "done",  # Removed ("removed" when it never started)
    4: "done",  # Completed (fault when the exit code is not 0)
    5: "pending",  # Held
    6: "running",  # Transferring output
    7: "running",  # Suspended
}
HELD = 5
REMOVED, TRANSFERRING_OUTPUT = 3, 6


def leaving(ad) -> bool:
    """A pilot in the queue on its way out: transferring its output, or removed after it started.

    Such a pilot is counted as running (it still holds its slot) and shown apart as "exiting".
    """
    status = int(ad.get("JobStatus") or 0)
    return status == TRANSFERRING_OUTPUT or (status == REMOVED and bool(ad.get("JobStartDate")))

STATUS_KEYS = {
    "scheddhost": Key("str", "", help="schedd host (default: the local schedd, or the collector's)"),
    "scheddport": Key("int", None, min=1, max=65535, help="schedd port (with scheddhost: no collector needed)"),
    "collectorhost": Key("str", "", help="collector that locates the schedd"),
    "collectorport": Key("int", 9618, min=1, max=65535),
    "timeout": Key("float", 60.0, min=1, help="seconds before a bindings call is given up"),
}


def quote(text: str) -> str:
    """A ClassAd string literal."""
    import classad2

    return classad2.quote(text)


def schedd_location(host: str, port: int) -> Any:
    """The location ad of the schedd at host:port, as ``Collector.locate`` would give it.

    ``htcondor2.Schedd`` reads MyAddress and CondorVersion from it; the version
    and platform are this client's (the schedd's own are not known without
    asking a collector).
    """
    import classad2
    import htcondor2

    address = f"<[{host}]:{port}>" if ":" in host and not host.startswith("[") else f"<{host}:{port}>"
    return classad2.ClassAd({"MyType": "Scheduler", "Name": host, "Machine": host, "MyAddress": address,
                             "CondorVersion": htcondor2.version(), "CondorPlatform": htcondor2.platform()})


def connect_schedd(options: dict[str, Any]) -> Any:
    """The htcondor2.Schedd of ``batchstatus.condor.scheddhost/scheddport/collectorhost/collectorport``."""
    import htcondor2

    host, port = options["scheddhost"], options["scheddport"]
    collector = options["collectorhost"]
    timeout = options["timeout"]
    if host and port:
        return htcondor2.Schedd(schedd_location(host, int(port)))
    if collector or host:  # a named schedd without a port: ask the configured collector (COLLECTOR_HOST)
        where = f"{collector}:{options['collectorport']}" if collector else "COLLECTOR_HOST"
        coll = htcondor2.Collector(where if collector else None)
        ad = commands.call(coll.locate, htcondor2.DaemonType.Schedd, host or None, timeout=timeout,
                           what=f"locate schedd {host or '(default)'} at {where}")
        if ad is None:  # Schedd(None) would silently mean the local schedd
            raise LookupError(f"collector {where} knows no schedd {host or '(default)'}")
        return htcondor2.Schedd(ad)
    return htcondor2.Schedd()


def pilot_identity(ad: Any) -> tuple[str, str, str]:
    """(factory, queue, wmsqueue) of a pilot's ClassAd; empty strings when absent."""
    factory = ad.get("APF_FACTORY") or ""
    jobid = ad.get("FACTORY_JOBID") or ""
    if not factory and "#" in str(jobid):
        factory = str(jobid).split("#", 1)[0]
    queue = ad.get("APF_QUEUE") or ad.get("MATCH_APF_QUEUE") or ""
    wmsqueue = ad.get("APF_WMSQUEUE") or queue
    return str(factory), str(queue), str(wmsqueue)


def pilot_state(ad: Any) -> str:
    status = int(ad.get("JobStatus") or 0)
    state = CONDOR_STATES.get(status, "unknown")
    if status == 3 and not ad.get("JobStartDate"):
        return "removed"
    if status == 4:
        return ended_state(ad.get("ExitCode"), bool(ad.get("ExitBySignal")))
    return state


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def finished_pilot(ad: Any, factory: str) -> FinishedPilot:
    exitcode = ad.get("ExitCode")
    if ad.get("ExitBySignal") and ad.get("ExitSignal") is not None:
        exitcode = 128 + int(ad.get("ExitSignal"))
    end = _number(ad.get("CompletionDate")) or _number(ad.get("EnteredCurrentStatus")) or time.time()
    return FinishedPilot(f"{ad.get('ClusterId')}.{ad.get('ProcId')}", _number(ad.get("JobStartDate")), end,
                         int(exitcode) if exitcode is not None else None, pilot_state(ad), factory)


class Condor(BatchStatusPlugin):
    """Pilots per queue in one HTCondor schedd (one query + bounded history per interval).

    Keys (per queue, the same for every queue of one schedd):
    ``batchstatus.condor.scheddhost``, ``.scheddport`` (both set: talk to that
    schedd directly), ``.collectorhost``, ``.collectorport`` (9618: locate the
    schedd there), none of them: the local schedd; ``.timeout`` (60 s per
    bindings call). Interval: ``[Factory] batchstatus.condor.sleep``.

    Returns {queue: BatchQueueInfo}: pending (held included and shown apart),
    running (pilots transferring output or removed after they started
    included, and shown apart as exiting), done/fault of the last hour (queue + history), ``finished``
    pilots for Throttle, and ``peers`` (other factories' pilots of the same
    WMS queue). A failed or timed out call raises (status unknown).
    """

    name = "Condor"
    requires = CONDOR_REQUIRES
    keys = STATUS_KEYS
    endpoint_keys = ("scheddhost", "scheddport", "collectorhost", "collectorport")
    name_keys = ("scheddhost", "scheddport", "collectorhost", "collectorport")
    default_sleep = 60.0
    default_maxage = 600.0

    def __init__(self, options: dict[str, Any], context: Any):
        super().__init__(options, context)
        self._schedd: Any = None

    @property
    def timeout(self) -> float:
        return self.options["timeout"]

    def constraint(self, wmsqueues: Iterable[str]) -> str:
        """This factory's pilots and other factories' pilots of our WMS queues."""
        fid = self.context.factory_id
        mine = f"(APF_FACTORY =?= {quote(fid)} || regexp({quote('^' + re.escape(fid) + '#')}, "\
               f"FACTORY_JOBID ?: \"\"))"
        peers = " || ".join(f"APF_WMSQUEUE =?= {quote(w)} || MATCH_APF_QUEUE =?= {quote(w)}"
                            for w in sorted(set(wmsqueues)))
        return f"{mine} || {peers}" if peers else mine

    def _schedd_handle(self) -> Any:
        if self._schedd is None:
            self._schedd = commands.call(connect_schedd, self.options, timeout=self.timeout, what="connect to schedd")
        return self._schedd

    def poll(self, queues: Collection[str]) -> dict[str, BatchQueueInfo]:
        wanted = list(queues)
        wms_of = wms_queues(self.context, wanted)
        constraint = self.constraint(wms_of.values())
        now = time.time()
        try:
            schedd = self._schedd_handle()
            ads = commands.call(schedd.query, constraint=constraint, projection=PROJECTION,
                                timeout=self.timeout, what="schedd query")
            history = commands.call(
                schedd.history, constraint=f"({constraint}) && EnteredCurrentStatus >= {int(now - HISTORY_WINDOW)}",
                projection=PROJECTION, match=HISTORY_LIMIT,
                since=f"EnteredCurrentStatus < {int(now - HISTORY_WINDOW)}",
                timeout=self.timeout, what="schedd history")
        except Exception:
            self._schedd = None  # reconnect next time (address may have changed)
            raise
        return self.summarize(ads, history, wanted, wms_of, now)

    def list_pilots(self, queue: str) -> list[LivePilot]:
        """The live pilots of ``queue`` from one schedd query (held ones with their HoldReason)."""
        fid = self.context.factory_id
        constraint = (f"(APF_FACTORY =?= {quote(fid)} && (APF_QUEUE =?= {quote(queue)} "
                      f"|| MATCH_APF_QUEUE =?= {quote(queue)}))")
        try:
            ads = commands.call(self._schedd_handle().query, constraint=constraint, projection=PROJECTION,
                                limit=MAX_LISTED_PILOTS, timeout=self.timeout, what="schedd query")
        except Exception:
            self._schedd = None
            raise
        pilots = []
        for ad in ads:
            status = int(ad.get("JobStatus") or 0)
            state = "held" if status == HELD else "exiting" if leaving(ad) else pilot_state(ad)
            if state in ("pending", "held", "running", "exiting"):
                pilots.append(LivePilot(f"{ad.get('ClusterId')}.{ad.get('ProcId')}", state, _number(ad.get("QDate")),
                                        _number(ad.get("JobStartDate")),
                                        str(ad.get("HoldReason") or "") if status == HELD else ""))
        return sorted(pilots, key=lambda p: p.submitted or 0)

    def summarize(self, ads: Iterable[Any], history: Iterable[Any], queues: Collection[str],
                  wms_of: dict[str, str], now: float) -> dict[str, BatchQueueInfo]:
        fid = self.context.factory_id
        wanted = set(queues)
        tally = Tally({q: wms_of[q] for q in wanted}, monitored_queues(self.context, wanted))
        finished: dict[str, dict[str, FinishedPilot]] = {q: {} for q in wanted}
        for source, ad_list in (("queue", ads), ("history", history)):
            for ad in ad_list:
                factory, queue, wmsqueue = pilot_identity(ad)
                state = "running" if source == "queue" and leaving(ad) else pilot_state(ad)
                if state == "unknown":
                    log.warning("HTCondor JobStatus %r not in the state table; counted as pending",
                                ad.get("JobStatus"))
                    state = "pending"
                if factory == fid:
                    if queue not in wanted:
                        continue
                    tally.waited(queue, _number(ad.get("QDate")), _number(ad.get("JobStartDate")), now,
                                 HISTORY_WINDOW)
                    if state in LIVE_STATES:
                        if source == "queue":
                            held = int(ad.get("JobStatus") or 0) == HELD
                            tally.mine(queue, state, held=held, exiting=leaving(ad),
                                       reason=str(ad.get("HoldReason") or "") if held else "",
                                       jobid=f"{ad.get('ClusterId')}.{ad.get('ProcId')}"
                                       if state == "running" and queue in tally.active else "")
                        continue
                    pilot = finished_pilot(ad, fid)
                    if now - pilot.end <= HISTORY_WINDOW:
                        finished[queue][pilot.jobid] = pilot
                elif source == "queue" and wmsqueue in tally.wms_wanted and state in LIVE_STATES:
                    tally.peer(wmsqueue, factory or "unknown", state, submitted=_number(ad.get("QDate")))
        return tally.answer({queue: pilots.values() for queue, pilots in finished.items()})

