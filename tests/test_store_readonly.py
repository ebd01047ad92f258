"""A persistence store that cannot be written: one warning, then a factory problem until it can again.

It warned three times every cycle and showed nowhere. The store sits on a
real 4 MB tmpfs: filled up under the running factory (writes fail as on a
read-only or full disk), then freed; or read-only from the start.
"""

from __future__ import annotations

import logging
import subprocess

import pytest
import requests

from tests.conftest import fill, small_tmpfs, wait_for
from tests.web_support import start_factory


@pytest.fixture
def small_fs(tmp_path):
    with small_tmpfs(tmp_path / "store-fs", "4m") as mount:
        yield mount


def test_store_that_cannot_be_written_warns_once_and_shows_as_a_factory_problem(confdir, small_fs, caplog):
    caplog.set_level(logging.DEBUG, logger="autopyfactory.persistence")
    run = start_factory(confdir, {"Q1": 0, "Q2": 0}, factory_extra=f"persistence.dbpath = {small_fs}/apf.sqlite\n"
                        "persistence.flushinterval = 0.2\n")
    try:
        queue = run.factory.queues["Q1"]
        wait_for(lambda: queue.cycles >= 1, what="a first cycle")
        assert requests.get(run.url + "/api/v1/factory", timeout=10).json()["problems"] == []
        fill(small_fs)
        before = queue.cycles
        wait_for(lambda: queue.cycles >= before + 4, what="four cycles on a read-only store")
        warnings = [r for r in caplog.records if r.name == "autopyfactory.persistence" and r.levelno >= logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "full" in warnings[0].getMessage().lower()
        problems = requests.get(run.url + "/api/v1/factory", timeout=10).json()["problems"]
        assert len(problems) == 1 and "cannot be written" in problems[0] and str(small_fs) in problems[0]
        page = requests.get(run.url + "/", timeout=10).text
        assert "factory problem: persistence store" in page

        (small_fs / "filler").unlink()
        done = queue.cycles
        wait_for(lambda: queue.cycles >= done + 2, what="cycles after the store is writable again")
        assert requests.get(run.url + "/api/v1/factory", timeout=10).json()["problems"] == []
        assert any("is written again" in r.getMessage() for r in caplog.records)
    finally:
        run.stop()


def test_read_only_store_at_start_runs_without_history_and_says_so(confdir, small_fs):
    from autopyfactory.persistence import Store

    Store(str(small_fs / "apf.sqlite")).close()  # yesterday's history, then the file system went read-only
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True, timeout=30)
    run = start_factory(confdir, {"Q1": 0}, factory_extra=f"persistence.dbpath = {small_fs}/apf.sqlite\n")
    try:
        wait_for(lambda: run.factory.queues["Q1"].cycles >= 2, what="cycles without a writable store")
        problems = requests.get(run.url + "/api/v1/factory", timeout=10).json()["problems"]
        assert len(problems) == 1 and "not usable, running without history" in problems[0], problems
        assert f"{small_fs} is not writable: read-only file system" in problems[0], problems
        assert sorted(p.name for p in small_fs.iterdir()) == ["apf.sqlite"]  # not "moved aside" as corrupt
    finally:
        run.stop()
