"""Stopping the factory accounts for every Local pilot it started.

The Local batch system lives inside the factory. Pilots still waiting for a
slot when it stops can never start: they were counted as submitted and then
vanished. Running ones were left behind (4-10 per stop in the attack) and
not counted after a restart: orphans. Now each pilot ends as *removed*
(running ones get SIGTERM, SIGKILL after a grace), with a line in its .err
file, a warning per kind and queue, and its record in the store.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import local_queue, wait_for
from tests.waiting import stop_process
from tests.web_support import start_factory

REPO = Path(__file__).resolve().parent.parent


def test_pending_and_running_local_pilots_end_as_removed_with_a_reason(confdir, caplog):
    caplog.set_level(logging.WARNING, logger="autopyfactory.localbatch")
    run = start_factory(confdir, {"Q1": 3}, maxrunning=1)
    batch = run.batch
    try:
        counts = wait_for(lambda: (lambda s: s if (s.running, s.pending) == (1, 2) else None)(
            batch.status(["Q1"], run.factory.context.factory_id)["Q1"]), what="one pilot running, two pending")
        assert counts.pending == 2
        pilots = list(batch._pilots.values())
        pending = [p for p in pilots if p.state == "pending"]
        running = [p for p in pilots if p.state == "running"]
        process = running[0].process
        run.factory.stop()  # what SIGTERM does
        assert process.poll() is not None  # no orphan
        after = batch.status(["Q1"], run.factory.context.factory_id)["Q1"]
        assert after.pending == 0 and after.running == 0
        assert sorted(f.jobid for f in after.finished if f.state == "removed") == sorted(p.jobid for p in pilots)
        warnings = [r.getMessage() for r in caplog.records if r.name == "autopyfactory.localbatch"]
        assert warnings == ["factory stopping: 2 local pilot(s) still pending never start, removed (Q1: 2)",
                            "factory stopping: 1 local pilot(s) still running ended (removed) (Q1: 1)"]
        for pilot in pending:
            assert "never started: the factory stopped" in Path(pilot.err).read_text()
        assert "ended: the factory stopped" in Path(running[0].err).read_text()
    finally:
        run.stop_file.touch()
        run.factory.stop()


PILOT = """#!/bin/sh
echo $$ > "{pids}/$$"
exec sleep 300
"""


def test_sigterm_of_the_daemon_leaves_no_orphan_and_stores_every_pilot(confdir, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    pilot = tmp_path / "pilot.sh"
    pilot.write_text(PILOT.format(pids=pids))
    pilot.chmod(0o755)
    confdir.write(local_queue("Q1", confdir.spool, executable=str(pilot), **{"batchsubmit.local.maxrunning": "3"}),
                  factory=f"persistence.dbpath = {tmp_path / 'apf.sqlite'}\n")
    confdir.work("Q1", 5)  # the pilots claim nothing: 3 run, 2 wait
    log = tmp_path / "apf.log"
    daemon = subprocess.Popen([sys.executable, "-m", "autopyfactory.cli.daemon", "--conf",
                               str(confdir.root / "factory.conf"), "--foreground", "--log", str(log)],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(os.listdir(pids)) == 3, what="three running pilots")
        started = [int(name) for name in os.listdir(pids)]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, daemon.stderr.read()
        orphans = [pid for pid in started if os.path.exists(f"/proc/{pid}") and
                   "zombie" not in open(f"/proc/{pid}/status").read()]
        assert not orphans, f"pilots still running after the factory stopped: {orphans}"
        conn = sqlite3.connect(tmp_path / "apf.sqlite")
        submitted = sum(n for (n,) in conn.execute("SELECT count FROM submissions WHERE kind = 'submit'"))
        ended = dict(conn.execute("SELECT state, count(*) FROM pilots GROUP BY state").fetchall())
        conn.close()
        assert submitted == 5 and ended == {"removed": 5}, (submitted, ended)  # every pilot it started
    finally:
        stop_process(daemon)
        for name in os.listdir(pids):
            try:
                os.kill(int(name), signal.SIGKILL)
            except ProcessLookupError:
                pass
