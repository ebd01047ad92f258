"""The real daemon and its store: kill -9 and restart, and a corrupt database file at start."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import local_queue, stop_process
from tests.test_persistence import wait_for

CYCLE = re.compile(r"queue Q1 cycle (\d+):")


def daemon(confdir, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autopyfactory.cli.daemon", "--conf", str(confdir.root / "factory.conf"),
         "--foreground", "--log", str(log), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def db_read(path: Path, sql: str, args: tuple = ()) -> list:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return []
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


def cycles_in(log: Path) -> list[int]:
    return [int(n) for n in CYCLE.findall(log.read_text())] if log.exists() else []


def test_kill_9_restart_continues_counters_and_does_not_submit_again(confdir, tmp_path: Path):
    release = tmp_path / "release-pilots"
    # pilots that hold their work item until the test lets them go (at most 5 minutes)
    hold = ["python3", "-c", f"import os, time\nfor _ in range(1500):\n"
                             f"    if os.path.exists({str(release)!r}): break\n    time.sleep(0.2)"]
    confdir.work("Q1", 4, hold)
    confdir.write(local_queue("Q1", confdir.spool, **{
        "executable.arguments": "--wrapperwmsqueue=Q1 --wrapperplugin=local",
        "batchsubmit.local.maxrunning": "10",
    }), factory="persistence.flushinterval = 0.5\n")
    db = confdir.root / "apf.sqlite"
    claimed = confdir.spool / "Q1" / "claimed"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"

    first = daemon(confdir, first_log, "--loglevel", "debug")  # every cycle (repeats are DEBUG)
    second = None
    try:
        wait_for(lambda: (db_read(db, "SELECT submitted_total FROM queue_state WHERE queue = 'Q1'") or [(0,)])[0][0]
                 >= 4, what="4 pilots submitted and stored")
        wait_for(lambda: claimed.is_dir() and len(list(claimed.glob("*.json"))) == 4,
                 what="the 4 pilots to claim their work")
        wait_for(lambda: len(cycles_in(first_log)) >= 3, what="a few more cycles")
        wait_for(lambda: (db_read(db, "SELECT cycles FROM queue_state WHERE queue = 'Q1'") or [(0,)])[0][0] >= 3,
                 what="cycles written")
        first.send_signal(signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
        (state,) = db_read(db, "SELECT cycles, submitted_total, errors_total, last_submission FROM queue_state")
        cycles_at_kill, submitted_at_kill = state[0], state[1]
        # cycles are written every persistence.flushinterval: a kill -9 loses those since the last write
        assert 3 <= cycles_at_kill <= max(cycles_in(first_log))

        second = daemon(confdir, second_log, "--loglevel", "debug")
        wait_for(lambda: len(cycles_in(second_log)) >= 5, what="5 cycles after the restart")
        stop_process(second)
        text = second_log.read_text()
        assert f"queue Q1: restored {cycles_at_kill} cycles, {submitted_at_kill} submitted" in text
        # the cycle numbers go on from the stored state, not from 1
        assert cycles_in(second_log)[0] == cycles_at_kill + 1
        # nothing submitted again for work the killed factory's pilots hold, in the log and in the store
        assert "submitted" not in " ".join(line for line in text.splitlines() if CYCLE.search(line))
        subs = db_read(db, "SELECT count, ids FROM submissions WHERE kind = 'submit'")
        assert sum(count for count, _ in subs) == submitted_at_kill
        assert sum(len(json.loads(ids)) for _, ids in subs) == submitted_at_kill
        (after,) = db_read(db, "SELECT cycles, submitted_total, last_submission FROM queue_state")
        assert after[0] >= cycles_at_kill + 5 and after[1] == submitted_at_kill and after[2] == state[3]
    finally:
        release.write_text("go")
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)


def test_corrupt_database_at_start_is_set_aside_and_the_daemon_runs(confdir, tmp_path: Path):
    confdir.work("Q1", 1, ["true"])
    confdir.write(local_queue("Q1", confdir.spool, **{
        "executable.arguments": "--wrapperwmsqueue=Q1 --wrapperplugin=local"}))
    db = confdir.root / "apf.sqlite"
    garbage = b"SQLite format 3\x00" + os.urandom(8192)
    db.write_bytes(garbage)
    log = tmp_path / "daemon.log"

    process = daemon(confdir, log, "--cycles", "3")
    try:
        assert process.wait(120) == 0, process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    text = log.read_text()
    assert "is not usable" in text and "moved to" in text
    aside = list(confdir.root.glob("apf.sqlite.corrupt-*"))
    assert [p.read_bytes() for p in aside if not p.name.endswith(("-wal", "-shm"))] == [garbage]
    assert cycles_in(log) == [1, 2, 3]
    assert db_read(db, "SELECT count(*) FROM cycles WHERE queue = 'Q1'") == [(3,)]
    assert db_read(db, "PRAGMA integrity_check") == [("ok",)]
    # and the next start goes on from the fresh file without complaint
    process = daemon(confdir, tmp_path / "again.log", "--cycles", "2")
    assert process.wait(120) == 0
    assert cycles_in(tmp_path / "again.log") == [4, 5]
    assert "not usable" not in (tmp_path / "again.log").read_text()
