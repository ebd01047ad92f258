"""Pause, drain and timed downtime: CLI, admin API, store, a real daemon killed with -9 and restarted."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
import requests

from autopyfactory.cli import apf
from autopyfactory.timefmt import iso, parse_time
from tests.conftest import local_queue, stop_process, wait_for
from tests.test_persistence_daemon import daemon, db_read
from tests.web_support import PILOT, TOKEN, free_port, start_factory


def test_times_iso_and_relative():
    now = 1_000_000.0
    assert parse_time("2026-12-02T06:00Z", now) == parse_time("2026-12-02T07:00+01:00", now)
    assert iso(parse_time("2026-12-02T06:00Z")) == "2026-12-02T06:00:00Z"
    assert iso(parse_time("2026-12-02 06:00")) == "2026-12-02T06:00:00Z"  # no zone: UTC
    assert [parse_time(t, now) - now for t in ("+2h", "30m", "90s", "1d", "+1.5h")] == [7200, 1800, 90, 86400, 5400]
    for bad in ("tomorrow", "2h ago", "", "+h"):
        with pytest.raises(ValueError, match="ISO 8601 like 2026-12-02T06:00Z, or relative like"):
            parse_time(bad, now)


def apf_run(capsys, *argv: str) -> tuple[int, str, str]:
    code = apf.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_drain_removes_only_pilots_not_started_and_pause_ends_at_until(confdir, capsys):
    run = start_factory(confdir, {"D": 4, "P": 0}, maxrunning=1)
    conf = ["--conf", str(confdir.root / "factory.conf")]
    queue = run.factory.queues["D"]
    try:
        wait_for(lambda: run.batch.status(["D"], "test-factory")["D"].pending == 3
                 and run.batch.status(["D"], "test-factory")["D"].running == 1, what="1 running and 3 pending pilots")
        code, out, err = apf_run(capsys, "drain", "D", "--reason", "site downtime", "--until", "+1h", *conf)
        assert code == 0, err
        assert re.fullmatch(r"queue D drained until \S+Z \(site downtime\): it submits nothing and removes its "
                            r"pilots that have not started; running ones finish\n", out)
        wait_for(lambda: run.batch.status(["D"], "test-factory")["D"].pending == 0, what="the pending pilots removed")
        states = sorted(run.batch.states("D"))
        assert states == ["removed", "removed", "removed", "running"]
        view = requests.get(run.url + "/api/v1/queues/D", timeout=30).json()
        assert view["health"] == "drained" and view["pause"]["reason"] == "site downtime"
        assert abs(parse_time(view["pause"]["until"]) - time.time() - 3600) < 120
        assert "drained by the operator until" in view["health_reason"] and "site downtime" in view["health_reason"]
        page = requests.get(run.url + "/", timeout=30).text.split('id="queue-D"')[1].split("</tr>")[0]
        assert re.search(r">\W*drained</span>", page) and "site downtime" in page
        cycles = queue.cycles
        wait_for(lambda: queue.cycles >= cycles + 3, what="3 drained cycles")
        assert queue.last_record.submitted == 0 and "queue drained: submitting 0" in queue.last_record.message

        # a short --until ends by itself: logged, and audited as the system
        code, out, err = apf_run(capsys, "pause", "P", "--until", "2s", *conf)
        assert code == 0 and "queue P paused until" in out, err
        wait_for(lambda: run.factory.queues["P"].pause is None, what="the pause to end at --until")
        audit = requests.get(run.url + "/api/v1/admin/audit?limit=5", headers=run.admin_headers(), timeout=30).json()
        ended = audit["actions"][0]
        assert (ended["client"], ended["action"], ended["target"], ended["result"]) == ("system", "resume", "P", "ok")
        assert "ended by itself" in ended["detail"]
        assert [a["detail"] for a in audit["actions"] if a["action"] == "drain"] == [
            f"drained until {view['pause']['until']}: site downtime"]

        code, out, err = apf_run(capsys, "resume", "D", *conf)
        assert code == 0 and out == "queue D active\n"
        wait_for(lambda: queue.last_record.submitted > 0, what="D submitting again")
    finally:
        run.stop()


def test_admin_pause_refuses_bad_until(confdir):
    run = start_factory(confdir, {"Q": 0})
    try:
        url = run.url + "/api/v1/admin/queues/Q/pause"
        for until, why in (("soon", "not a time"), ("2001-01-01T00:00Z", "is not in the future")):
            answer = requests.post(url, json={"until": until}, headers=run.admin_headers(), timeout=30)
            assert answer.status_code == 400 and why in answer.json()["error"]
        assert run.factory.queues["Q"].pause is None
        answer = requests.post(url, json={"reason": "x" * 600}, headers=run.admin_headers(), timeout=30)
        assert answer.status_code == 200 and len(answer.json()["pause"]["reason"]) == 501  # cut, with "…"
    finally:
        run.stop()


def test_cli_says_a_bad_until_before_asking(capsys, tmp_path):
    code, _, err = apf_run(capsys, "pause", "Q", "--until", "next week", "--url", "http://127.0.0.1:9")
    assert code == 2 and "--until: not a time" in err


def api(url: str, path: str) -> dict:
    """The API's answer; {} while the daemon is not listening yet."""
    try:
        return requests.get(url + path, timeout=30).json()
    except requests.ConnectionError:
        return {}


def test_pause_and_drain_outlive_kill_9_and_restart(confdir, tmp_path: Path, capsys):
    stop = tmp_path / "pilots.stop"
    pilot = tmp_path / "pilot.sh"
    pilot.write_text(PILOT.format(stop=stop))
    pilot.chmod(0o755)
    token = tmp_path / "admin.token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    confdir.write(local_queue("P", confdir.spool, executable=str(pilot))
                  + local_queue("D", confdir.spool, executable=str(pilot), **{"batchsubmit.local.maxrunning": "1"}),
                  factory=f"logserver.enabled = True\nlogserver.port = {port}\nadmin.tokenfile = {token}\n")
    confdir.work("D", 3)
    conf = ["--conf", str(confdir.root / "factory.conf")]
    logs = [tmp_path / f"daemon{n}.log" for n in range(3)]
    process = daemon(confdir, logs[0], "--loglevel", "debug")  # every cycle's line (repeats are DEBUG)
    try:
        wait_for(lambda: (api(url, "/api/v1/queues/D").get("pending"), api(url, "/api/v1/queues/D").get("running"))
                 == (2, 1),
                 what="1 running and 2 pending pilots of D")
        until = iso(time.time() // 60 * 60 + 30 * 86400)  # in a month, on the minute
        assert apf_run(capsys, "pause", "P", "--reason", "new CE", "--until", until[:-4] + "Z", *conf)[0] == 0
        assert apf_run(capsys, "drain", "D", "--reason", "downtime", *conf)[0] == 0
        wait_for(lambda: api(url, "/api/v1/queues/D")["pending"] == 0, what="D's pending pilots removed")
        assert api(url, "/api/v1/queues/D")["running"] == 1  # the started one goes on
        removed = db_read(confdir.root / "apf.sqlite", "SELECT count, ids FROM submissions WHERE kind = 'remove'")
        assert sum(count for count, _ in removed) == 2 and all(json.loads(ids) for _, ids in removed)
        confdir.work("P", 2)  # work P would submit for, were it not paused

        for n, how in ((1, signal.SIGKILL), (2, signal.SIGTERM)):  # kill -9, then systemctl try-restart
            process.send_signal(how)
            process.wait(30)
            process = daemon(confdir, logs[n], "--loglevel", "debug")
            wait_for(lambda n=n: api(url, "/api/v1/queues/P").get("cycle_count") and "queue P cycle" in
                     logs[n].read_text(), what="the restarted factory cycling")
            p, d = api(url, "/api/v1/queues/P"), api(url, "/api/v1/queues/D")
            assert (p["health"], p["pause"]["reason"], p["pause"]["until"]) == ("paused", "new CE", until)
            assert (d["health"], d["pause"]["reason"], d["pause"]["until"]) == ("drained", "downtime", None)
            assert f"still paused until {until}: new CE (kept across the restart)" in logs[n].read_text()
        wait_for(lambda: len(re.findall(r"queue P cycle \d+:.*queue paused: submitting 0", logs[2].read_text())) >= 3,
                 what="3 paused cycles of P")
        assert p["submitted_total"] == 0
        assert not [line for line in logs[2].read_text().splitlines() if "queue P cycle" in line and "submitted" in line]

        # a short --until: P resumes by itself and submits for its work
        assert apf_run(capsys, "pause", "P", "--until", "+3s", *conf)[0] == 0
        wait_for(lambda: api(url, "/api/v1/queues/P")["submitted_total"] >= 2, what="P resumed and submitting")
        assert "ended by itself, submitting again" in logs[2].read_text()
    finally:
        stop.touch()
        stop_process(process)
