"""The operator's console: history over days from the store, and a queue's pilots by state with why they wait."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid

import pytest
import requests

from autopyfactory.info import FinishedPilot
from autopyfactory.persistence import Store
from autopyfactory.records import CycleRecord
from autopyfactory.web.history import window
from tests.conftest import local_queue, wait_for
from tests.web_support import start_factory

HOUR, DAY = 3600.0, 86400.0


def fill_history(store: Store, queues: str | list[str], now: float, days: float = 14, every: float = 600.0) -> None:
    """``days`` of cycles of each queue, in time order as a factory writes them, every ``every`` seconds
    (pending = hour of the day, running 10, activated 2 × pending, 1 pilot submitted a cycle) and one pilot
    ended per cycle, a fault every sixth."""
    start = now - days * DAY
    for i in range(int(days * DAY / every)):
        when = start + i * every
        hour = int(when // HOUR) % 24
        for queue in [queues] if isinstance(queues, str) else queues:
            store.record_finished(queue, [FinishedPilot(f"{i}.0", when - 60, when, 0 if i % 6 else 1,
                                                        "fault" if i % 6 == 0 else "done")])
            store.record_cycle(CycleRecord(queue, i + 1, started=when, wms={"ready": 2 * hour},
                                           batch={"pending": hour, "running": 10}, decided=1, submitted=1))


def test_window_bounds_and_defaults():
    now = 1_800_000_000.0
    assert window("7d", None, now) == (now - 7 * DAY, 3600.0)  # a round step, at most 300 buckets
    assert window(None, None, now) == (now - DAY, 300.0)
    assert window("6h", "5m", now) == (now - 6 * HOUR, 300.0)
    assert window("2027-01-15T00:00Z", "1h", now) == (now - 8 * HOUR, 3600.0)  # now is 08:00 that day
    for since, step, why in (("14d", "60", "at most 2000 buckets"), ("1h", "1s", "at least 10 s"),
                             ("400d", None, "in the last 366 days"), ("soon", None, "expected a span"),
                             ("+2h", None, "in the last"), ("7d", "-5", "not a duration"),
                             ("7d", "inf", "not a duration"), ("7d", "nan", "not a duration")):
        with pytest.raises(ValueError, match=why):
            window(since, step, now)


def test_history_buckets_from_the_store(tmp_path):
    now = time.time()
    store = Store(str(tmp_path / "apf.sqlite"))
    fill_history(store, ["Q", "OTHER"], now, days=2)
    buckets = store.history("Q", now - DAY, now, HOUR)
    assert len(buckets) == 24
    for bucket in buckets:  # six 10-minute cycles an hour
        hours = {int((bucket["time"] + s) // HOUR) % 24 for s in range(0, 3600, 600)}
        assert bucket["pending"] == max(hours) and bucket["running"] == 10
        assert bucket["activated"] == 2 * max(hours) and bucket["submitted"] == 6
        assert bucket["done"] + bucket["fault"] == 6 and bucket["fault"] == 1
    factory = store.history(None, now - DAY, now, HOUR)  # from the factory's samples, one a minute of cycles
    assert [b["running"] for b in factory] == [20] * 24 and [b["submitted"] for b in factory] == [12] * 24
    assert [b["fault"] for b in factory] == [2] * 24 and [b["done"] for b in factory] == [10] * 24
    assert all(b["activated"] == 2 * b["pending"] for b in factory)
    # before the first cycle: empty buckets, unknown counts (never zero)
    early = store.history("Q", now - 3 * DAY, now - 2 * DAY - HOUR, HOUR)
    assert early and all(b["pending"] is None and b["submitted"] == 0 for b in early)
    store.close()


@pytest.fixture
def console(confdir):
    run = start_factory(confdir, {"Q": 2, "IDLE": 0})
    yield run
    run.stop()


def test_history_api_and_pages(console):
    store = console.factory.store
    fill_history(store, "IDLE", time.time(), days=14)
    answer = requests.get(f"{console.url}/api/v1/queues/IDLE/history?since=7d&step=1h", timeout=30)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["queue"] == "IDLE" and data["step"] == 3600 and len(data["buckets"]) == 168
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["buckets"][0]["time"])
    assert {b["running"] for b in data["buckets"][:-2]} == {10} and sum(b["submitted"] for b in data["buckets"]) >= 167 * 6
    factory = requests.get(f"{console.url}/api/v1/history?since=14d", timeout=30).json()
    assert factory["step"] == 7200 and len(factory["buckets"]) == 168
    for query, why in (("since=7d&step=10", "at most 2000 buckets"), ("since=yesterday", "since: expected")):
        bad = requests.get(f"{console.url}/api/v1/queues/IDLE/history?{query}", timeout=30)
        assert bad.status_code == 400 and why in bad.json()["error"]
    assert requests.get(f"{console.url}/api/v1/queues/NOPE/history", timeout=30).status_code == 404

    page = requests.get(f"{console.url}/queues/IDLE?span=7d", timeout=30).text
    section = page.split('id="history-spans"', 1)[1]
    assert "<b>7d</b>" in section and 'href="/queues/IDLE?span=14d"' in section
    charts = re.findall(r'<svg class="chart".*?</svg>', section, re.S)
    assert len(charts) >= 2
    assert "WMS activated" in charts[0] and "fault" in charts[1] and "per 60 min" in charts[1]
    assert len(re.findall(r'class="xtick"', charts[0])) >= 4 and len(re.findall(r'class="ytick"', charts[0])) >= 3
    overview = requests.get(f"{console.url}/history?span=14d", timeout=30).text
    assert "<b>14d</b>" in overview and 'class="chart"' in overview
    assert 'href="/history"' in requests.get(console.url + "/", timeout=30).text


def test_pilots_by_state_from_the_batch_system_and_the_store(console):
    queue = console.factory.queues["Q"]
    running = wait_for(lambda: (r := requests.get(f"{console.url}/api/v1/queues/Q/pilots?state=running",
                                                  timeout=30).json())["total"] == 2 and r, what="2 running pilots")
    assert {p["state"] for p in running["pilots"]} == {"running"} and all(p["started"] for p in running["pilots"])
    assert all(p["queue_wait"] is not None and p["queue_wait"] >= 0 for p in running["pilots"])
    assert requests.get(f"{console.url}/api/v1/queues/Q/pilots?state=pending", timeout=30).json()["total"] == 0
    console.stop_file.touch()  # the pilots end (done), and are counted in the store
    done = wait_for(lambda: (r := requests.get(f"{console.url}/api/v1/queues/Q/pilots?state=done",
                                               timeout=30).json())["total"] >= 2 and r, what="done pilots")
    pilot = done["pilots"][0]
    assert pilot["ended"] and pilot["exit_code"] == 0 and pilot["submitted"] and pilot["queue_wait"] is not None
    assert pilot["logs"] and all(url.startswith("/logs/") for url in pilot["logs"].values())
    assert requests.get(console.url + next(iter(pilot["logs"].values())), timeout=30).status_code == 200
    paged = requests.get(f"{console.url}/api/v1/queues/Q/pilots?state=done&offset=1&limit=1", timeout=30).json()
    assert paged["total"] == done["total"] and [p["jobid"] for p in paged["pilots"]] == [done["pilots"][1]["jobid"]]
    page = requests.get(f"{console.url}/queues/Q/pilots?state=done", timeout=30).text
    assert f'data-pilot="{pilot["jobid"]}"' in page and "<b>done</b>" in page
    for query in ("state=lost", "state=done&limit=0", "state=done&offset=x"):
        assert requests.get(f"{console.url}/api/v1/queues/Q/pilots?{query}", timeout=30).status_code == 400
    assert queue.alive


def test_a_batch_system_that_cannot_list_says_so(console, monkeypatch):
    plugin = console.factory.queues["Q"].batch_poller.plugin

    def fails(queue):
        raise RuntimeError("squeue: timed out after 60s")

    monkeypatch.setattr(plugin, "list_pilots", fails)
    answer = requests.get(f"{console.url}/api/v1/queues/Q/pilots?state=pending", timeout=30)
    assert answer.status_code == 503 and answer.json()["total"] is None  # unknown, never an empty list
    assert "timed out" in answer.json()["error"]


def test_held_slurm_pilots_are_listed_with_their_reason(confdir, slurm):
    """Real Slurm: pilots submitted held (--hold) are listed as held with Slurm's Reason, and the queue page
    sums the reasons."""
    name = f"HELD_{uuid.uuid4().hex[:6]}"
    section = local_queue(name, confdir.spool, batchstatusplugin="Slurm", batchsubmitplugin="Slurm",
                          batchqueue=slurm.partition, **{"batchstatus.slurm.slurmconf": slurm.conf,
                                                         "batchsubmit.slurm.slurmconf": slurm.conf,
                                                         "batchsubmit.slurm.extraargs": "--hold",
                                                         "apfqueue.sleep": "1"})
    confdir.spool.joinpath(name).mkdir(parents=True, exist_ok=True)
    for i in range(3):
        confdir.spool.joinpath(name, f"w{i}.json").write_text('{"command": ["true"]}')
    run = start_factory(confdir, {}, sections=section,
                        factory_extra="batchstatus.slurm.sleep = 1\nbatchstatus.slurm.maxage = 60\n")
    try:
        held = wait_for(lambda: (r := requests.get(f"{run.url}/api/v1/queues/{name}/pilots?state=held",
                                                   timeout=60).json())["total"] == 3 and r,
                        timeout=180, every=1.0, what="3 held pilots listed")
        assert {p["reason"] for p in held["pilots"]} <= {"JobHeldUser", "JobHeldAdmin"}, held
        assert all(re.fullmatch(r"\d+(_\d+)?", p["jobid"]) for p in held["pilots"])
        page = wait_for(lambda: (t := requests.get(f"{run.url}/queues/{name}", timeout=60).text)
                        and 'id="reasons"' in t and t, timeout=120, every=1.0, what="the reasons on the queue page")
        reasons = page.split('id="reasons"', 1)[1].split("</table>", 1)[0]
        assert "JobHeld" in reasons and ">3<" in reasons
    finally:
        run.stop()
        jobs = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, **slurm.env}).stdout.split("\n")
        mine = [line.split()[0] for line in jobs if f":{name}" in line]
        if mine:
            subprocess.run(["scancel", *mine], timeout=60, env={**os.environ, **slurm.env})
