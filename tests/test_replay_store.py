"""``apf replay --store``: the work and the batch behaviour a real factory run recorded, replayed."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopyfactory.replay.store import StoreError, parse_since, read_store
from tests.conftest import local_queue, stop_process, wait_for
from tests.test_simulate import APF


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A store written by the real daemon on the Local plugins: 6 work items, then 6 more once 3 are done."""
    from tests.conftest import ConfDir

    confdir = ConfDir(tmp_path_factory.mktemp("store"))
    command = ["sleep", "0.5"]
    confdir.work("Q1", 6, command)
    db = confdir.root / "apf.sqlite"
    confdir.write(local_queue("Q1", confdir.spool, **{"batchsubmit.local.maxrunning": "4"}),
                  factory=f"persistence.dbpath = {db}\n")
    done = confdir.spool / "Q1" / "done"
    log = confdir.root / "apf.log"
    daemon = subprocess.Popen([sys.executable, "-m", "autopyfactory.cli.daemon", "--conf",
                               str(confdir.root / "factory.conf"), "--foreground", "--log", str(log)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: done.is_dir() and len(list(done.glob("*.json"))) >= 3, what="3 items done", timeout=120)
        for i in range(6):  # names of their own: the first six keep theirs in done/
            (confdir.spool / "Q1" / f"later-{i}.json").write_text(json.dumps({"command": command}))
        wait_for(lambda: len(list(done.glob("*.json"))) == 12, what="all 12 items done", timeout=120)
        cycles = sqlite3.connect(db).execute("SELECT count(*) FROM cycles").fetchone()[0]
        wait_for(lambda: sqlite3.connect(db).execute("SELECT count(*) FROM cycles").fetchone()[0] >= cycles + 4,
                 what="a few cycles that see every item done", timeout=60)
    finally:
        stop_process(daemon)
    return db


def test_the_recorded_work_is_what_the_factory_saw(recorded: Path):
    workload = read_store(str(recorded))
    assert workload.queue == "Q1" and workload.completions_from == "done counter"
    assert len(workload.jobs) == 12  # 6 at the start, 6 later: every item, once
    assert sum(job.submit == 0 for job in workload.jobs) >= 1
    assert max(job.submit for job in workload.jobs) > 0  # the second six came later
    assert all(0.4 <= job.runtime < 30 for job in workload.jobs)  # the pilots' own run times (sleep 0.5)
    assert len(workload.queue_waits) >= 12 and all(w >= 0 for w in workload.queue_waits)
    assert 1 <= workload.peak_running <= 4


def test_apf_replay_store_answers_what_each_policy_would_have_done(recorded: Path):
    done = subprocess.run([APF, "replay", "--store", str(recorded), "--queue", "Q1", "--since", "1d", "--json",
                           "--policy", "apf-default", "--policy", "recommended", "--cycle", "10",
                           "--status-interval", "10"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["trace"] == f"{recorded} [Q1]"
    assert data["model"]["queue_delay"].startswith("recorded (")
    assert 1 <= data["model"]["slots"] <= 4
    assert [r["policy"] for r in data["results"]] == ["apf-default", "recommended"]
    for result in data["results"]:
        assert result["jobs"] == result["jobs_done"] == 12
    assert "queue Q1:" in done.stderr and "12 jobs (estimated" in done.stderr


def test_bad_store_arguments_say_why(recorded: Path, tmp_path: Path):
    with pytest.raises(StoreError, match=r"no cycles of queue 'NOPE' \(it has Q1\)"):
        read_store(str(recorded), "NOPE")
    with pytest.raises(StoreError, match="fewer than two cycles of Q1 with a known WMS status"):
        read_store(str(recorded), since=time.time() + 3600)
    not_a_store = tmp_path / "x.sqlite"
    not_a_store.write_text("hello")
    with pytest.raises(StoreError, match="not a readable factory store"):
        read_store(str(not_a_store))
    done = subprocess.run([APF, "replay", "--store", str(recorded), "--since", "yesterday-ish"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--since 'yesterday-ish': expected 7d, 12h" in done.stderr
    both = subprocess.run([APF, "replay", "--trace", "lublin-256", "--queue", "Q1"], capture_output=True,
                          text=True, timeout=60)
    assert both.returncode == 2 and "--queue and --since go with --store" in both.stderr


def test_since_forms():
    assert parse_since("2d", now=1_000_000) == 1_000_000 - 2 * 86400
    assert parse_since("90s", now=1000) == 910
    assert parse_since("2026-01-02T00:00:00Z") == 1767312000
    assert parse_since("1767312000") == 1767312000
    with pytest.raises(StoreError, match="at most 10 years back"):
        parse_since("99999999d")
    with pytest.raises(StoreError, match="not a time"):
        parse_since("inf")
