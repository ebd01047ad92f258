"""A real Factory with a Panda WMS queue (PanDA double on 127.0.0.1) and Local batch plugins.

For every way PanDA can fail: the factory keeps running (a Local WMS queue
beside it goes on), the Panda queue submits 0 while its status is unknown and
says why (endpoint and error), and it submits again once answers are good.
"""

from __future__ import annotations

import threading
import time

import pytest

from autopyfactory.factory import Factory
from tests.conftest import local_queue, wait_for

FAST = """\
wmsstatus.panda.sleep = 0.2
wmsstatus.panda.maxage = 1.5
wmsstatus.panda.breakerfailures = 3
wmsstatus.panda.breakercooldown = 0.5
"""


class Running:
    """A started factory and every cycle record of its queues."""

    def __init__(self, factory: Factory):
        self.factory = factory
        self.records: list[tuple[str, object]] = []
        self.lock = threading.Lock()
        factory.listeners.append(self._collect)

    def _collect(self, queue, record) -> None:
        with self.lock:
            self.records.append((queue.name, record))

    def cycles(self, queue: str, since: float = 0.0) -> list:
        with self.lock:
            return [r for name, r in self.records if name == queue and r.started >= since]



def panda_queue(name: str, url: str, wmsqueue: str = "TEST_SITE_A", timeout: float = 0.5, **extra) -> str:
    keys = {
        "wmsqueue": wmsqueue,
        "wmsstatusplugin": "Panda",
        "wmsstatus.panda.url": url,
        "wmsstatus.panda.timeout": timeout,
        "batchstatusplugin": "Local",
        "batchsubmitplugin": "Local",
        "executable": "/bin/true",
        "apfqueue.sleep": 0.2,
        "schedplugin": "Ready",
    } | extra
    return f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"


@pytest.fixture
def start_factory(confdir):
    started: list[Factory] = []

    def start(queues: str, factory_extra: str = FAST) -> Running:
        confdir.write(queues, factory=factory_extra)
        config = confdir.load()
        factory = Factory(config)
        running = Running(factory)
        factory.start()
        started.append(factory)
        return running

    yield start
    for factory in started:
        factory.stop(timeout=10)


SCENARIOS = {
    # mode: fragment of the reason the Panda queue gives while it submits 0
    "http500": "HTTP 500",
    "hang": "Read timed out",
    "truncated": "not valid JSON",
    "cut": "ChunkedEncodingError",
    "false": "success is False: database connection lost",
    "emptydata": "'data' is empty",
    "huge": "larger than maxbytes",
    "pickle": "never unpickled",
    "down": "Connection refused",
}


@pytest.mark.parametrize("mode", list(SCENARIOS))
def test_factory_survives_bad_panda_and_resumes(mode, panda, start_factory, confdir):
    run = start_factory(panda_queue("PANDAQ", panda.url) + local_queue("LOCALQ", confdir.spool))
    factory = run.factory

    # good answers: the Panda queue submits for its 3 activated jobs
    wait_for(lambda: any(r.submitted > 0 for r in run.cycles("PANDAQ")), what="a first submission")

    went_bad = time.time()
    if mode == "down":
        panda.down()
    else:
        panda.mode = mode

    def unknown_cycles():
        return [r for r in run.cycles("PANDAQ", went_bad) if r.wms is None]

    wait_for(lambda: len(unknown_cycles()) >= 5, what="five cycles with unknown WMS status")
    unknown = unknown_cycles()
    assert all(r.submitted == 0 for r in unknown), [r.message for r in unknown]
    for record in unknown[2:]:  # the first ones may still say only "stale"
        assert "WMS status unknown" in record.message and "submitting 0" in record.message
        assert f"{panda.url}" in record.message, record.message  # the endpoint by its URL
    assert any(SCENARIOS[mode] in r.message for r in unknown), [r.message for r in unknown]

    # nothing else stopped: the daemon's queues live, the Local WMS queue keeps cycling with known status
    assert all(q.alive for q in factory.queues.values())
    wait_for(lambda: sum(r.wms is not None for r in run.cycles("LOCALQ", went_bad)) >= 3,
             what="Local queue cycles during the PanDA trouble")

    poller = factory.queues["PANDAQ"].wms_poller
    wait_for(lambda: poller.health()["consecutive_failures"] >= 3, what="failures counted")
    health = poller.health()
    assert SCENARIOS[mode] in health["last_error"]
    assert health["breaker"] in ("open", "half-open")

    # good again: the queue submits again
    came_back = time.time()
    panda.mode = "good"
    panda.release.set()
    if mode == "down":
        panda.up()
    wait_for(lambda: any(r.submitted > 0 for r in run.cycles("PANDAQ", came_back)), what="submissions resumed")
    wait_for(lambda: poller.health()["breaker"] == "closed", what="breaker closed")
    assert poller.health()["healthy"]


def test_breaker_limits_requests_while_panda_fails(panda, start_factory):
    factory_extra = FAST.replace("breakercooldown = 0.5", "breakercooldown = 1.0")
    run = start_factory(panda_queue("PANDAQ", panda.url), factory_extra)
    wait_for(lambda: any(r.wms is not None for r in run.cycles("PANDAQ")), what="first status")
    panda.mode = "http500"
    queue = run.factory.queues["PANDAQ"]
    poller = queue.wms_poller
    wait_for(lambda: poller.breaker_opened == 1, what="breaker open")
    before, opened_at, cycles = panda.count(), poller.last_attempt, queue.cycles
    # the cool-down: one probe a full second later, not a retry every 0.2 s; it fails and re-opens
    wait_for(lambda: poller.breaker_opened == 2, what="the failed probe")
    assert panda.count() - before == 1
    assert poller.last_attempt - opened_at >= 1.0
    assert queue.alive and queue.cycles > cycles


def test_300_queues_one_endpoint_one_request_per_interval(panda, start_factory):
    sites = {f"SITE_{i:03d}": {"activated": 0, "running": i} for i in range(300)}
    panda.stats = {"success": True, "message": "", "data": sites}
    queues = "".join(
        panda_queue(f"Q{i:03d}", panda.url, wmsqueue=f"SITE_{i:03d}", timeout=5,
                    **{"apfqueue.sleep": "1.0", "schedplugin": "Null"})
        for i in range(300)
    )
    factory_extra = "wmsstatus.panda.sleep = 2.0\nwmsstatus.panda.maxage = 60\n"
    run = start_factory(queues, factory_extra)
    factory = run.factory
    assert len(factory.queues) == 300
    pollers = [p for (kind, _), p in factory.status.pollers.items() if kind == "wmsstatus"]
    assert len(pollers) == 1 and len(pollers[0].queues) == 300

    def all_known():
        seen = {name for name, r in list(run.records) if r.wms is not None}
        return len(seen) == 300

    wait_for(all_known, timeout=120, what="every queue to see its WMS status")
    assert run.cycles("Q123")[-1].wms["running"] == 123

    def total_cycles() -> int:
        return sum(q.cycles for q in factory.queues.values())

    start_count, cycles, started = panda.count(), total_cycles(), time.time()
    wait_for(lambda: panda.count() >= start_count + 2 and total_cycles() >= cycles + 600,
             timeout=120, what="two more requests and two cycles of every queue")
    requests = panda.count() - start_count
    elapsed = time.time() - started
    print(f"300 queues: {panda.count()} requests in total, {requests} in {elapsed:.1f}s at sleep 2s")
    # one request per 2 s interval, whatever the number of queues (never one per queue)
    assert requests <= elapsed / 2.0 + 1, f"{requests} requests in {elapsed:.1f}s"
    assert pollers[0].calls >= requests


def test_idle_site_absent_from_panda_gets_its_test_pilots(panda, start_factory):
    # PanDA omits sites without active jobs; a site in "test" must still get its StatusTest pilots
    panda.queueinfo = dict(panda.queueinfo, IDLE_SITE={"name": "IDLE_SITE", "status": "test"})
    queue = panda_queue("IDLEQ", panda.url, wmsqueue="IDLE_SITE", **{
        "wmsstatus.panda.queueinfourl": panda.queueinfo_url,
        "schedplugin": "Ready, StatusTest", "sched.statustest.pilots": 2})
    run = start_factory(queue)
    wait_for(lambda: any(r.submitted for r in run.cycles("IDLEQ")), what="test pilots for the idle site")
    record = next(r for r in run.cycles("IDLEQ") if r.submitted)
    assert record.submitted == 2 and record.wms["ready"] == 0, record.message
    assert run.factory.queues["IDLEQ"].wms_poller.health()["consecutive_failures"] == 0


@pytest.mark.parametrize("mode", ["drip", "dripheaders"])
def test_trickling_panda_is_unknown_and_the_endpoint_recovers(mode, panda, start_factory):
    # headers then one byte every 0.1 s (or one header line that never ends): no single read ever
    # times out, yet the queue must be unknown with the reason, and good answers must be used again
    # at once although the trickling connections are still open
    run = start_factory(panda_queue("PANDAQ", panda.url, timeout=0.5))
    wait_for(lambda: any(r.submitted > 0 for r in run.cycles("PANDAQ")), what="a first submission")
    went_bad = time.time()
    panda.mode = mode
    wait_for(lambda: sum(r.wms is None for r in run.cycles("PANDAQ", went_bad)) >= 5,
             what="five cycles with unknown WMS status")
    reason = "not complete within the timeout of 0.5s" if mode == "drip" else "no answer within 1.5s"
    wait_for(lambda: any(reason in r.message for r in run.cycles("PANDAQ", went_bad)),
             what=f"the reason {reason!r}")
    assert all(r.submitted == 0 for r in run.cycles("PANDAQ", went_bad) if r.wms is None)

    came_back = time.time()
    panda.mode = "good"  # the trickling connections go on dripping (panda.release is not set)
    wait_for(lambda: any(r.submitted > 0 for r in run.cycles("PANDAQ", came_back)), timeout=15,
             what="submissions resumed while the old answers still trickle")
    health = run.factory.queues["PANDAQ"].wms_poller.health()
    assert health["abandoned_calls"] <= 3  # hung calls are capped and reported
