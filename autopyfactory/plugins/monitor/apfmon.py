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


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    data: dict[str, str] | None = None
    registration: bool = False


class APFMon(MonitorPlugin):
    """Reports the factory, its queues (labels), each cycle's pilots and the last message.

    Keys (monitor.conf section): ``monitorURL`` (required, e.g.
    https://apfmon.example.org/api), ``apfmon.timeout`` (10 s per request),
    ``apfmon.maxqueued`` (1000 calls waiting at most).

    Calls, APF 2.4 style: at start ``PUT /factories/<factoryId>`` (version,
    email, url) and ``PUT /labels`` (one per queue naming this section);
    after each cycle that submitted ``PUT /jobs`` with
    ``[{"cid", "label", "factory", "out", "err", "log"}]`` (log URLs), and
    ``POST /labels/<factoryId>:<queue>`` with ``status=<last message>``.

    All calls go out from one background thread through a bounded queue:
    ``cycle_done`` never waits on the network; when the monitor is slow or
    down and the queue is full, new calls are dropped and counted
    (``dropped``), so memory stays bounded.
    """

    name = "APFMon"
    keys = {
        "monitorURL": Key("str", required=True, help="base URL of the APFMon REST API"),
        "apfmon.timeout": Key("float", 10.0, min=0.1, help="seconds per request"),
        "apfmon.maxqueued": Key("int", 1000, min=1, help="calls waiting to be sent, at most"),
    }

    def __init__(self, section: Section, context: FactoryContext):
        super().__init__(section, context)
        self.url = str(section.get("monitorurl")).rstrip("/")
        self.timeout = float(section.get("apfmon.timeout", 10.0))
        self.calls: queuelib.Queue[Call] = queuelib.Queue(maxsize=int(section.get("apfmon.maxqueued", 1000)))
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._registered = False
        self._last_registration = 0.0
        self._stop = threading.Event()  # drain what is queued, then end
        self._abandon = threading.Event()  # end now
        self._thread = threading.Thread(target=self._run, name=f"apfmon:{section.name}", daemon=True)

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
            log.warning("monitor %s: %d call(s) to %s not sent at stop", self.section.name, left, self.url)

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
            self._put(Call("PUT", "/jobs", json=jobs))
        self._put(Call("POST", f"/labels/{factory}:{queue.name}", data={"status": redact(record.message)[:1024]}))

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

    def _put(self, call: Call) -> None:
        try:
            self.calls.put_nowait(call)
        except queuelib.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("monitor %s: %s is not keeping up, %d call(s) dropped so far (last error: %s)",
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
                self._send(session, call)
        finally:
            session.close()

    def _send(self, session: requests.Session, call: Call) -> None:
        cas = ca_trust()
        try:
            answer = session.request(
                call.method, self.url + call.path, timeout=(min(self.timeout, 5.0), self.timeout),
                verify=cas.verify(self.url),
                data=json.dumps(call.json) if call.json is not None else call.data,
                headers={"Content-Type": "application/json"} if call.json is not None else None,
            )
            if answer.status_code >= 400:
                raise requests.HTTPError(f"{answer.status_code} {answer.reason}")
        except (requests.RequestException, CAMissing) as exc:
            hint = cas.explain(exc)
            self.failed += 1
            self.last_error = f"{call.method} {call.path}: {exc}" + (f" ({hint})" if hint else "")
            if call.registration:
                self._registered = False
            log.warning("monitor %s: %s", self.section.name, self.last_error)
            return
        self.sent += 1
        if call.registration:
            self._registered = True


def _version() -> str:
    from autopyfactory import __version__

    return __version__
