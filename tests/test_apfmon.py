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
from autopyfactory.plugins.monitor.apfmon import APFMon
from autopyfactory.records import CycleRecord
from tests.conftest import wait_for
from tests.web_support import free_port, start_factory


class Recorder(ThreadingHTTPServer):
    """An APFMon double: remembers every request."""

    daemon_threads = True

    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def handle_one(handler, method):  # noqa: N805
                length = int(handler.headers.get("Content-Length") or 0)
                body = handler.rfile.read(length).decode() if length else ""
                with self.lock:
                    self.requests.append({"method": method, "path": handler.path, "body": body,
                                          "type": handler.headers.get("Content-Type", "")})
                handler.send_response(200)
                handler.send_header("Content-Length", "2")
                handler.end_headers()
                handler.wfile.write(b"{}")

            def do_PUT(handler):  # noqa: N802, N805
                handler.handle_one("PUT")

            def do_POST(handler):  # noqa: N802, N805
                handler.handle_one("POST")

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"

    def seen(self, method: str, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["method"] == method and r["path"] == path]

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
        wait_for(lambda: queue.cycles >= 8 and queue.submitted_total >= 2, timeout=30,
                 what="cycles while the monitor hangs")
        monitor = run.factory.monitors["apfmon"]
        assert monitor.sent == 0
    finally:
        started = time.time()
        run.stop()
        stop_took = time.time() - started
    assert stop_took < 30  # stop waits a bounded time for the sender, not 60 s per call


def test_a_full_queue_drops_calls_instead_of_growing(confdir, hanging):
    confdir.write("", monitor=monitor_conf(hanging.url, "apfmon.timeout = 30\napfmon.maxqueued = 5\n"))
    config = confdir.load()
    from autopyfactory.context import FactoryContext

    context = FactoryContext(config)
    monitor = APFMon(config.monitor["apfmon"], context)
    monitor.start()
    try:
        queue = QueueConfig("Q", "queues.conf")
        record = CycleRecord(queue="Q", number=1, ids=["1.0", "1.1"])
        for _ in range(2000):  # none of them waits on the network: the calls beyond 5 are dropped
            monitor.cycle_done(queue, record)
        assert monitor.calls.qsize() <= 5
        assert monitor.dropped >= 2000 * 2 - 5 - 3
    finally:
        monitor.stop(timeout=1)
    assert monitor.sent == 0


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
