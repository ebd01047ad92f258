"""APFMon against real HTTP servers on 127.0.0.1: one that records, one that hangs, none at all."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from autopyfactory.config import ConfigError, QueueConfig
from autopyfactory.context import FactoryContext
from autopyfactory.info import BatchQueueInfo, FinishedPilot
from autopyfactory.plugins.monitor.apfmon import APFMon
from autopyfactory.records import CycleRecord
from tests.conftest import wait_for
from tests.web_support import free_port, start_factory

# APFMon's rules for a pilot's state (its api/views.py): running only after created, exiting only after
# running, done only after exiting, fault after any state but fault; a pilot it was not told of is 404
ALLOWED_FROM = {"running": {"created"}, "exiting": {"running"}, "done": {"exiting"},
                "fault": {"created", "running", "exiting", "done"}}


class Recorder(ThreadingHTTPServer):
    """An APFMon double: remembers every request, and keeps each pilot's state as APFMon does."""

    daemon_threads = True

    def __init__(self):
        self.requests: list[dict] = []
        self.jobs: dict[str, str] = {}  # "<factory>:<cid>" -> state
        self.lock = threading.Lock()
        self.down = False  # answer 503 to everything

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as APFMon's web server

            def handle_one(handler, method):  # noqa: N805
                length = int(handler.headers.get("Content-Length") or 0)
                body = handler.rfile.read(length).decode() if length else ""
                with self.lock:
                    status, text = (503, "down") if self.down else self.answer(method, handler.path, body)
                    self.requests.append({"method": method, "path": handler.path, "body": body,
                                          "type": handler.headers.get("Content-Type", ""), "status": status})
                data = text.encode()
                handler.send_response(status)
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)

            def do_PUT(handler):  # noqa: N802, N805
                handler.handle_one("PUT")

            def do_POST(handler):  # noqa: N802, N805
                handler.handle_one("POST")

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, method: str, path: str, body: str) -> tuple[int, str]:
        if method == "PUT" and path == "/api/jobs":
            for job in json.loads(body):
                self.jobs[f"{job['factory']}:{job['cid']}"] = "created"
            return 201, "created"
        if method == "POST" and path.startswith("/api/jobs/"):
            jid = path.removeprefix("/api/jobs/")
            if jid not in self.jobs:
                return 404, f"Not found: {jid}"
            state = parse_qs(body).get("state", [""])[0]
            if self.jobs[jid] not in ALLOWED_FROM.get(state, ()):
                return 400, f"Invalid state transition: {self.jobs[jid]}->{state}"
            self.jobs[jid] = state
        return 200, "{}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"

    def seen(self, method: str, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def states(self, cid: str, factory: str = "test-factory") -> list[str]:
        """The states posted for one pilot, in the order they came (accepted or not)."""
        return [parse_qs(r["body"])["state"][0] for r in self.seen("POST", f"/api/jobs/{factory}:{cid}")]

    def refused(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["status"] >= 400]

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class Hanging:
    """Accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
                self.held.append(conn)
            except OSError:
                continue

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/api"

    def close(self):
        self.stopped.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def hanging():
    server = Hanging()
    yield server
    server.close()


def monitor_conf(url: str, extra: str = "") -> str:
    return f"[apfmon]\nmonitorplugin = APFMon\nmonitorURL = {url}\n{extra}\n[log]\nmonitorplugin = Log\n"


def test_apfmon_reports_factory_labels_jobs_and_status(confdir, recorder):
    run = start_factory(confdir, {"ALPHA": 2, "BETA": 0}, monitor=monitor_conf(recorder.url),
                        queue_extra={"monitorsection": "apfmon, log"})
    try:
        queue = run.factory.queues["ALPHA"]
        wait_for(lambda: queue.submitted_total >= 2, what="submissions")
        ids = [i for r in list(queue.records) for i in r.ids]
        wait_for(lambda: {j["cid"] for r in recorder.seen("PUT", "/api/jobs") for j in json.loads(r["body"])}
                 >= set(ids), what="the jobs at the monitor")
        wait_for(lambda: recorder.seen("POST", "/api/labels/test-factory:BETA"), what="BETA's status")
    finally:
        run.stop()

    factory = recorder.seen("PUT", "/api/factories/test-factory")
    assert len(factory) == 1
    data = json.loads(factory[0]["body"])
    assert data["version"] == run.factory.version and data["email"] == "ops@example.org"
    labels = json.loads(recorder.seen("PUT", "/api/labels")[0]["body"])
    assert sorted(label["name"] for label in labels) == ["ALPHA", "BETA"]
    assert all(label["factory"] == "test-factory" for label in labels)
    jobs = [j for r in recorder.seen("PUT", "/api/jobs") for j in json.loads(r["body"])]
    assert recorder.seen("PUT", "/api/jobs")[0]["type"] == "application/json"
    for job in jobs:
        assert job["label"] == "ALPHA" and job["factory"] == "test-factory"
        assert job["out"].endswith(f"/ALPHA/{job['cid']}.out") and job["err"].endswith(f"{job['cid']}.err")
    statuses = [parse_qs(r["body"])["status"][0] for r in recorder.seen("POST", "/api/labels/test-factory:ALPHA")]
    messages = [r.message for r in queue.records]
    assert any("submitted" in s for s in statuses)
    assert statuses[-1] in messages  # label status = the queue's last message
    # the factory registered first, the labels next, before any job
    order = [(r["method"], r["path"]) for r in recorder.requests]
    assert order.index(("PUT", "/api/factories/test-factory")) < order.index(("PUT", "/api/labels"))
    assert order.index(("PUT", "/api/labels")) < order.index(("PUT", "/api/jobs"))


def test_a_hanging_monitor_never_delays_a_cycle(confdir, hanging):
    # each request would wait 60 s; the queues run their cycles regardless
    run = start_factory(confdir, {"ALPHA": 2}, monitor=monitor_conf(hanging.url, "apfmon.timeout = 60\n"),
                        queue_extra={"monitorsection": "apfmon"})
    try:
        queue = run.factory.queues["ALPHA"]
        wait_for(lambda: queue.batch_seen is not None and len(queue.batch_seen.active) >= 2,
                 what="running pilots, whose states go to the monitor")
        cycles = queue.cycles
        wait_for(lambda: queue.cycles >= cycles + 8 and queue.submitted_total >= 2, timeout=30,
                 what="cycles while the monitor hangs")
        monitor = run.factory.monitors["apfmon"]
        assert monitor.sent == 0
    finally:
        started = time.time()
        run.stop()
        stop_took = time.time() - started
    assert stop_took < 30  # stop waits a bounded time for the sender, not 60 s per call


def test_a_full_queue_drops_calls_instead_of_growing(confdir, hanging):
    monitor = started_monitor(confdir, hanging.url, "apfmon.timeout = 30\napfmon.maxqueued = 5\n")
    try:
        queue = QueueConfig("Q", "queues.conf")
        record = CycleRecord(queue="Q", number=1, ids=["1.0", "1.1"])
        active = {f"{n}.0": "running" for n in range(10_000)}
        slowest = 0.0
        for _ in range(2000):  # none of them waits on the network: the items beyond 5 are dropped
            started = time.monotonic()
            monitor.cycle_done(queue, record)
            monitor.pilots_seen(queue, BatchQueueInfo(running=len(active), active=active))  # a new answer each time
            slowest = max(slowest, time.monotonic() - started)
        assert monitor.calls.qsize() <= 5
        assert monitor.dropped >= 2000 * 3 - 5 - 3
        assert slowest < 1.0  # each request would wait 30 s
    finally:
        monitor.stop(timeout=1)
    assert monitor.sent == 0


def started_monitor(confdir, url: str, extra: str = "") -> APFMon:
    confdir.write("", monitor=monitor_conf(url, extra))
    config = confdir.load()
    monitor = APFMon(config.monitor["apfmon"], FactoryContext(config))
    monitor.start()
    return monitor


def flush(monitor: APFMon, recorder: Recorder) -> None:
    """Wait until the sender has sent everything queued before now (one thread, first in first out)."""
    flush.count = getattr(flush, "count", 0) + 1
    name = f"SYNC{flush.count}"
    monitor.cycle_done(QueueConfig(name, "queues.conf"), CycleRecord(queue=name, number=1))
    wait_for(lambda: recorder.seen("POST", f"/api/labels/test-factory:{name}"), what="the sender to catch up")


# a pilot that claims its queue's work item, runs until the test says go, then exits with CODE
LIVING_PILOT = """#!/bin/sh
d="$APF_WMS_SPOOLDIR/$FACTORYQUEUE"
mkdir -p "$d/claimed"
for f in "$d"/*.json; do mv "$f" "$d/claimed/" 2>/dev/null && break; done
n=0
while [ ! -e "{go}" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done
exit {code}
"""


def test_apfmon_receives_every_state_of_a_pilots_life(confdir, recorder, tmp_path):
    go = tmp_path / "go"
    executables = {}
    for name, code in (("GOOD", 0), ("BAD", 3)):
        path = tmp_path / f"{name}.sh"
        path.write_text(LIVING_PILOT.format(go=go, code=code))
        path.chmod(0o755)
        executables[name] = str(path)
    run = start_factory(confdir, {"GOOD": 1, "BAD": 1}, monitor=monitor_conf(recorder.url),
                        queue_extra={"monitorsection": "apfmon"}, executables=executables)
    try:
        queues = run.factory.queues
        wait_for(lambda: queues["GOOD"].submitted_total >= 1 and queues["BAD"].submitted_total >= 1,
                 what="a pilot of each queue")
        ids = {name: [i for r in list(queues[name].records) for i in r.ids] for name in ("GOOD", "BAD")}
        every = ids["GOOD"] + ids["BAD"]
        # while they run, APFMon shows them running (the factory read it from the batch status)
        wait_for(lambda: all(recorder.jobs.get(f"test-factory:{cid}") == "running" for cid in every),
                 what="every pilot running at APFMon")
        go.touch()
        wait_for(lambda: all(recorder.jobs.get(f"test-factory:{cid}") in ("done", "fault") for cid in every),
                 what="every pilot ended at APFMon")
        flush(run.factory.monitors["apfmon"], recorder)
    finally:
        run.stop()

    assert recorder.refused() == []  # APFMon's rules accepted every call
    order = [(r["method"], r["path"], r["body"]) for r in recorder.requests]
    for name, end, rc in (("GOOD", "done", "0"), ("BAD", "fault", "3")):
        for cid in ids[name]:
            # each state once, in APFMon's order, the exit code with exiting
            assert recorder.states(cid) == ["running", "exiting", end]
            posts = recorder.seen("POST", f"/api/jobs/test-factory:{cid}")
            assert parse_qs(posts[1]["body"])["rc"] == [rc]
            # created (in one PUT /jobs for the cycle's pilots) before any state
            created = next(i for i, (method, path, body) in enumerate(order)
                           if method == "PUT" and path == "/api/jobs" and cid in {j["cid"] for j in json.loads(body)})
            first_state = order.index(("POST", f"/api/jobs/test-factory:{cid}", posts[0]["body"]))
            assert created < first_state
    assert recorder.jobs[f"test-factory:{ids['GOOD'][0]}"] == "done"
    assert recorder.jobs[f"test-factory:{ids['BAD'][0]}"] == "fault"


def test_each_state_is_sent_once_and_skipped_ones_are_filled_in(confdir, recorder):
    monitor = started_monitor(confdir, recorder.url)
    queue = QueueConfig("Q", "queues.conf")
    recorder.jobs["test-factory:pre.0"] = "created"  # created before a restart: APFMon knows it
    old = FinishedPilot("old.0", start=1.0, end=2.0, exitcode=0, state="done")
    try:
        # the first answer after a start: what ended before is not reported again; a running pilot is
        monitor.pilots_seen(queue, BatchQueueInfo(finished=(old,), active={"pre.0": "running"}))
        monitor.cycle_done(queue, CycleRecord(queue="Q", number=1, ids=["a.0", "b.0", "c.0", "d.0"]))
        second = BatchQueueInfo(
            active={"pre.0": "running", "a.0": "running", "b.0": "exiting"},
            finished=(old,
                      FinishedPilot("c.0", start=10.0, end=20.0, exitcode=0, state="done"),  # never seen running
                      FinishedPilot("d.0", start=None, end=20.0, state="removed")))  # removed before it started
        monitor.pilots_seen(queue, second)
        monitor.pilots_seen(queue, second)  # the same answer again
        monitor.pilots_seen(queue, BatchQueueInfo(active=dict(second.active), finished=second.finished))  # equal
        flush(monitor, recorder)
        assert recorder.states("pre.0") == ["running"]
        assert recorder.states("a.0") == ["running"]
        assert recorder.states("b.0") == ["running", "exiting"]
        assert recorder.states("c.0") == ["running", "exiting", "done"]  # APFMon refuses done straight after created
        assert recorder.states("d.0") == [] and recorder.states("old.0") == []

        third = BatchQueueInfo(active={"pre.0": "running", "x.9": "running"}, finished=(
            *second.finished,
            FinishedPilot("a.0", start=10.0, end=30.0, exitcode=None, state="fault"),  # killed: no exit code
            FinishedPilot("b.0", start=10.0, end=30.0, exitcode=0, state="done")))
        monitor.pilots_seen(queue, third)
        monitor.pilots_seen(queue, BatchQueueInfo(active={"pre.0": "running", "x.9": "exiting"},
                                                  finished=third.finished))
        flush(monitor, recorder)
        assert recorder.states("a.0") == ["running", "fault"]
        assert recorder.states("b.0") == ["running", "exiting", "done"]
        assert recorder.states("c.0") == ["running", "exiting", "done"]  # still in the answer, not sent again
        assert recorder.states("pre.0") == ["running"]
        # a pilot APFMon does not know (404) is asked about once, then left alone
        assert recorder.states("x.9") == ["running"] and monitor.rejected == 1
        assert [r["path"] for r in recorder.refused()] == ["/api/jobs/test-factory:x.9"]
    finally:
        monitor.stop()


def test_states_apfmon_could_not_take_are_sent_again(confdir, recorder):
    monitor = started_monitor(confdir, recorder.url)
    queue = QueueConfig("Q", "queues.conf")
    try:
        monitor.pilots_seen(queue, BatchQueueInfo())
        monitor.cycle_done(queue, CycleRecord(queue="Q", number=1, ids=["r.0", "s.0"]))
        flush(monitor, recorder)
        recorder.down = True
        ended = (FinishedPilot("s.0", start=10.0, end=20.0, exitcode=0, state="done"),)
        monitor.pilots_seen(queue, BatchQueueInfo(active={"r.0": "running"}, finished=ended))
        wait_for(lambda: monitor.failed >= 1, what="a failed call")
        recorder.down = False
        flush(monitor, recorder)
        assert recorder.jobs["test-factory:r.0"] == "created"
        monitor.pilots_seen(queue, BatchQueueInfo(active={"r.0": "running"}, finished=ended))  # the next answer
        flush(monitor, recorder)
        assert recorder.jobs["test-factory:r.0"] == "running"
        assert recorder.jobs["test-factory:s.0"] == "done"
        # one attempt while down (the rest of that answer waits for the next), then each state once
        assert len(recorder.states("r.0")) + len(recorder.states("s.0")) == 1 + 1 + 3
    finally:
        monitor.stop()


def test_a_dead_monitor_is_counted_not_raised(confdir):
    url = f"http://127.0.0.1:{free_port()}/api"
    run = start_factory(confdir, {"ALPHA": 1}, monitor=monitor_conf(url, "apfmon.timeout = 2\n"),
                        queue_extra={"monitorsection": "apfmon"})
    try:
        monitor = run.factory.monitors["apfmon"]
        wait_for(lambda: monitor.failed >= 3, what="failed monitor calls")
        assert monitor.last_error and "Connection" in monitor.last_error
        queue = run.factory.queues["ALPHA"]
        wait_for(lambda: queue.submitted_total >= 1, what="a submission")
        assert queue.errors_total == 0
    finally:
        run.stop()


def test_monitor_url_is_required(confdir):
    confdir.write("", monitor="[apfmon]\nmonitorplugin = APFMon\n")
    with pytest.raises(ConfigError, match=r"\[apfmon\] monitorURL: required by the APFMon plugin"):
        confdir.load()
