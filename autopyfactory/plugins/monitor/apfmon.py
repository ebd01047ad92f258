"""Monitor plugin that reports to an APFMon server over its REST API."""

from __future__ import annotations

import json
import logging
import os
import queue as queuelib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from autopyfactory.config import Key, QueueConfig, Section
from autopyfactory.info import BatchQueueInfo, FinishedPilot
from autopyfactory.interfaces import MonitorPlugin
from autopyfactory.records import CycleRecord
from autopyfactory.redact import redact
from autopyfactory.tls import CAMissing, ca_trust
from autopyfactory.tls import session as session_trusting

if TYPE_CHECKING:
    from autopyfactory.context import FactoryContext

log = logging.getLogger("autopyfactory.monitor")

# how often a failed factory/labels registration is tried again
REREGISTER_AFTER = 300.0
MAX_TRACKED = 100_000  # pilots per queue whose APFMon state is remembered (the oldest are forgotten beyond)

# APFMon's pilot states in the order it lets a pilot go through them: running only after created,
# exiting only after running, done only after exiting, fault after any state but fault.
RANK = {"created": 0, "running": 1, "exiting": 2, "done": 3, "fault": 3}
GONE = "gone"  # APFMon does not know the pilot (404): nothing more is sent for it
OK, REJECTED, MISSING, FAILED = "ok", "rejected", "missing", "failed"  # outcomes of one call


# How the factory's pilot states end up in APFMon's (docs/monitoring.md): a running pilot of a batch
# answer (BatchQueueInfo.active) by its state there, an ended one (FinishedPilot.state) by how it ended.
# empty (it ran and found no work) and removed after it started (killed from outside, as APFMon's own
# help puts it: "DONE: condor jobstate is Completed (or Removed)") are no fault of the pilot.
ACTIVE_STATE = {"running": "running", "exiting": "exiting"}
END_STATE = {"done": "done", "empty": "done", "removed": "done", "fault": "fault"}


def active_steps(state: str) -> list[tuple[str, dict[str, str]]]:
    """APFMon's states up to a running pilot's (``BatchQueueInfo.active``), each with its form fields."""
    return [("running", {})] if ACTIVE_STATE[state] == "running" else [("running", {}), ("exiting", {})]


def end_steps(pilot: FinishedPilot) -> list[tuple[str, dict[str, str]]]:
    """APFMon's states up to an ended pilot's last one, each with its form fields.

    APFMon refuses a transition that skips a state, so a pilot that started goes through
    running and exiting (with its exit code as ``rc``; a fault without an exit code, e.g.
    signalled, skips exiting: fault is taken from any state). One that never started:
    fault if it failed, else nothing (removed before it ran: it stays created there).
    """
    end = END_STATE.get(pilot.state, "done")
    if pilot.start is None:
        return [("fault", {})] if end == "fault" else []
    rc = {"rc": str(pilot.exitcode)} if pilot.exitcode is not None else {}
    exiting = [("exiting", rc)] if rc or end == "done" else []
    return [("running", {}), *exiting, (end, {})]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    data: dict[str, str] | None = None
    registration: bool = False
    label: str = ""
    created: tuple[str, ...] = ()  # PUT /jobs: the pilots it announces


@dataclass(frozen=True)
class Seen:
    """A batch answer of one queue (label): the sender turns it into state updates."""

    label: str
    batch: BatchQueueInfo


class APFMon(MonitorPlugin):
    """Reports the factory, its queues (labels), each pilot's life and each queue's last message.

    Keys (monitor.conf section): ``monitorURL`` (required, e.g.
    https://apfmon.example.org/api), ``apfmon.timeout`` (10 s per request),
    ``apfmon.maxqueued`` (1000 items waiting at most).

    Calls, as APFMon's API takes them: at start ``PUT /factories/<factoryId>``
    (version, email, url) and ``PUT /labels`` (one per queue naming this
    section); after each cycle that submitted ``PUT /jobs`` with
    ``[{"cid", "label", "factory", "out", "err", "log"}]`` (the pilots created,
    in one request); each state a pilot reaches afterwards as ``POST
    /jobs/<factoryId>:<cid>`` with ``state=running|exiting|done|fault`` (and
    ``rc=<exit code>`` with exiting), read from the batch answer each cycle
    planned from (``BatchQueueInfo.active`` and ``finished``); and ``POST
    /labels/<factoryId>:<queue>`` with ``status=<last message>``.

    Each state is sent once per pilot, in APFMon's order (created, running,
    exiting, then done or fault): a pilot seen only when it has ended gets the
    states it skipped first, since APFMon refuses a transition that skips one.
    The first batch answer of a queue after a start is taken as known:
    pilots that ended before are not reported again.

    All calls go out from one background thread through a bounded queue
    (one item per call, one per new batch answer of a queue): ``cycle_done``
    and ``pilots_seen`` never wait on the network; when the monitor is slow
    or down and the queue is full, new items are dropped and counted
    (``dropped``), so memory stays bounded. A state update APFMon cannot be
    reached for is tried again from the next answer; one it refuses (4xx) is
    counted (``rejected``) and not sent again.
    """

    name = "APFMon"
    keys = {
        "monitorURL": Key("str", required=True, help="base URL of the APFMon REST API"),
        "apfmon.timeout": Key("float", 10.0, min=0.1, help="seconds per request"),
        "apfmon.maxqueued": Key("int", 1000, min=1, help="items (calls, batch answers) waiting to be sent, at most"),
    }

    def __init__(self, section: Section, context: FactoryContext):
        super().__init__(section, context)
        self.url = str(section.get("monitorurl")).rstrip("/")
        self.timeout = float(section.get("apfmon.timeout", 10.0))
        self.calls: queuelib.Queue[Call | Seen] = queuelib.Queue(maxsize=int(section.get("apfmon.maxqueued", 1000)))
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.rejected = 0  # state updates APFMon refused (4xx): not sent again
        self.last_error: str | None = None
        self._registered = False
        self._last_registration = 0.0
        self._stop = threading.Event()  # drain what is queued, then end
        self._abandon = threading.Event()  # end now
        self._thread = threading.Thread(target=self._run, name=f"apfmon:{section.name}", daemon=True)
        self._answers: dict[str, BatchQueueInfo] = {}  # label -> the batch answer last queued (queue threads)
        # the sender thread's own: label -> {cid: APFMon state sent} for pilots not ended yet, and
        # label -> ids of the ended pilots in the latest answer that need nothing more
        self._states: dict[str, dict[str, str]] = {}
        self._ended: dict[str, set[str]] = {}

    # ------------------------------------------------------------ factory side (never blocks)
    def start(self) -> None:
        self._thread.start()
        self._register()

    def stop(self, timeout: float = 2.0) -> None:
        """Send what can be sent within ``timeout``, then leave the rest."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._abandon.set()
        left = self.calls.qsize()
        if left:
            log.warning("monitor %s: %d item(s) for %s not sent at stop", self.section.name, left, self.url)

    def cycle_done(self, queue: QueueConfig, record: CycleRecord) -> None:
        if not self._registered and time.time() - self._last_registration > REREGISTER_AFTER:
            self._register()
        factory = self.context.factory_id
        if record.ids:
            logdir = self.context.logdir(queue.name, record.started, create=False)
            jobs = [
                {"cid": cid, "label": queue.name, "factory": factory,
                 **{kind: self.context.logurl(os.path.join(logdir, f"{cid}.{kind}")) for kind in ("out", "err", "log")}}
                for cid in record.ids
            ]
            self._put(Call("PUT", "/jobs", json=jobs, label=queue.name, created=tuple(record.ids)))
        self._put(Call("POST", f"/labels/{factory}:{queue.name}", data={"status": redact(record.message)[:1024]}))

    def pilots_seen(self, queue: QueueConfig, batch: BatchQueueInfo) -> None:
        if self._answers.get(queue.name) is batch:  # the same answer again: nothing new in it
            return
        self._answers[queue.name] = batch
        self._put(Seen(queue.name, batch))

    def _register(self) -> None:
        self._last_registration = time.time()
        config = self.context.config
        factory = self.context.factory_id
        base = config.get("baseLogDirUrl") or ""
        url = base.rsplit("/logs", 1)[0] if base.endswith("/logs") else base
        self._put(Call("PUT", f"/factories/{factory}", json={
            "version": _version(), "email": config.get("factoryAdminEmail") or "", "url": url,
        }, registration=True))
        labels = [
            {"name": q.name, "factory": factory, "wmsqueue": q.wmsqueue, "batchqueue": q.batchqueue,
             "resource": q.values.get("batchsubmitplugin", "")}
            for q in config.enabled_queues.values()
            if self.section.name in q.values.get("monitorsection", [])
        ]
        if labels:
            self._put(Call("PUT", "/labels", json=labels, registration=True))

    def _put(self, call: Call | Seen) -> None:
        try:
            self.calls.put_nowait(call)
        except queuelib.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("monitor %s: %s is not keeping up, %d item(s) dropped so far (last error: %s)",
                            self.section.name, self.url, self.dropped, self.last_error)

    # ------------------------------------------------------------ sender thread
    def _run(self) -> None:
        session = session_trusting()
        session.headers["User-Agent"] = f"autopyfactory/{_version()}"
        try:
            while not self._abandon.is_set():
                try:
                    call = self.calls.get(timeout=0.2)
                except queuelib.Empty:
                    if self._stop.is_set():
                        return
                    continue
                if isinstance(call, Seen):
                    self._update(session, call)
                elif self._send(session, call) == OK and call.created:
                    states = self._states.setdefault(call.label, {})
                    states.update(dict.fromkeys(call.created, "created"))
                    self._bound(states)
        finally:
            session.close()

    def _update(self, session: requests.Session, seen: Seen) -> None:
        """Send the states the pilots of one batch answer reached since the last answer, in APFMon's order."""
        label, batch = seen.label, seen.batch
        states = self._states.setdefault(label, {})
        first = label not in self._ended
        before = self._ended.get(label, set())
        ended: set[str] = set()  # ended pilots of this answer that need nothing more
        todo: list[tuple[str, list[tuple[str, dict[str, str]]], bool]] = []
        for pilot in batch.finished:
            if pilot.jobid in before or (first and pilot.jobid not in states):
                ended.add(pilot.jobid)  # reported before, or ended before this factory started
                states.pop(pilot.jobid, None)
            else:
                todo.append((pilot.jobid, end_steps(pilot), True))
        todo += [(cid, active_steps(state), False) for cid, state in batch.active.items()]
        reachable = True
        for cid, steps, final in todo:
            if reachable and not self._abandon.is_set():
                reachable = self._advance(session, cid, steps, states)
            if not reachable or self._abandon.is_set():
                break  # what is left is tried again from the next answer
            if final:
                ended.add(cid)
                states.pop(cid, None)
        self._ended[label] = ended
        self._bound(states)

    def _advance(self, session: requests.Session, cid: str, steps: list[tuple[str, dict[str, str]]],
                 states: dict[str, str]) -> bool:
        """Send the ``steps`` beyond the pilot's last state sent; False if APFMon could not be reached."""
        current = states.get(cid, "created")  # a pilot this monitor did not announce: APFMon may know it
        path = f"/jobs/{self.context.factory_id}:{cid}"
        for state, fields in steps:
            if current == GONE or RANK[state] <= RANK[current]:
                continue
            outcome = self._send(session, Call("POST", path, data={"state": state, **fields}))
            if outcome == FAILED:
                return False
            current = GONE if outcome == MISSING else state
            states[cid] = current
        return True

    @staticmethod
    def _bound(states: dict[str, str]) -> None:
        """Forget the oldest pilots beyond MAX_TRACKED (ones never seen to end)."""
        while len(states) > MAX_TRACKED:
            del states[next(iter(states))]

    def _send(self, session: requests.Session, call: Call) -> str:
        """One call: OK, REJECTED or MISSING (a state update APFMon refused: 4xx, 404), or FAILED."""
        cas = ca_trust()
        state_update = call.method == "POST" and call.path.startswith("/jobs/")
        try:
            answer = session.request(
                call.method, self.url + call.path, timeout=(min(self.timeout, 5.0), self.timeout),
                verify=cas.verify(self.url),
                data=json.dumps(call.json) if call.json is not None else call.data,
                headers={"Content-Type": "application/json"} if call.json is not None else None,
            )
            if state_update and 400 <= answer.status_code < 500 and answer.status_code not in (408, 429):
                self.rejected += 1
                level = logging.INFO if self.rejected == 1 or self.rejected % 100 == 0 else logging.DEBUG
                log.log(level, "monitor %s: %s %s refused (%d so far): %d %s", self.section.name, call.path,
                        call.data, self.rejected, answer.status_code, answer.text[:200])
                return MISSING if answer.status_code == 404 else REJECTED
            if answer.status_code >= 400:
                raise requests.HTTPError(f"{answer.status_code} {answer.reason}")
        except (requests.RequestException, CAMissing) as exc:
            hint = cas.explain(exc)
            self.failed += 1
            self.last_error = f"{call.method} {call.path}: {exc}" + (f" ({hint})" if hint else "")
            if call.registration:
                self._registered = False
            log.warning("monitor %s: %s", self.section.name, self.last_error)
            return FAILED
        self.sent += 1
        if call.registration:
            self._registered = True
        return OK


def _version() -> str:
    from autopyfactory import __version__

    return __version__
