"""The admin API's config, log, stop and audit endpoints; the audit trail of every admin call.

In-process factories (Local plugins) served over HTTP on a free port, and a
real daemon process restarted to show that the audit trail survives it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import requests

from autopyfactory.cli import apf
from autopyfactory.redact import REDACTED
from autopyfactory.web.admin import effective_config, tail
from tests.conftest import local_queue, stop_process, wait_for
from tests.test_persistence_daemon import daemon
from tests.web_support import TOKEN, RunningFactory, free_port, start_factory

ADMIN = "/api/v1/admin/"
# every admin endpoint: (method, path, action)
ENDPOINTS = [("POST", "reload", "reload"), ("POST", "stop", "stop"), ("POST", "loglevel", "loglevel"),
             ("POST", "queues/ALPHA/pause", "pause"), ("POST", "queues/ALPHA/resume", "resume"),
             ("GET", "config", "config"), ("GET", "log", "log"), ("GET", "audit", "audit")]

# values that must never leave the factory through the admin API
SECRETS = ["hunter2-db", "s3cretpw", "bearer-token-dir", "renew-hunter2", "x509up_u1234"]
AUTH = """\
[atlas-token]
plugin = Token
token.tokenfile = /bearer-token-dir/atlas.token
token.renewcommand = /bin/false --password renew-hunter2
token.checktime = 600
"""
MONITOR = """\
[apfmon]
monitorplugin = APFMon
monitorURL = https://apf:s3cretpw@127.0.0.1:9/api
[log]
monitorplugin = Log
"""


@pytest.fixture
def admin_factory(confdir):
    run = start_factory(confdir, {"ALPHA": 0, "BETA": 0}, auth=AUTH, monitor=MONITOR, queue_extra={
        "executable.arguments": "--wrapperwmsqueue=%(wmsqueue)s --wrapperplugin=local db_password=hunter2-db",
    })
    yield run
    run.stop()


def call(run: RunningFactory, method: str, path: str, token: str | None = TOKEN, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.request(method, run.url + ADMIN + path, headers=headers, timeout=60, **kw)


def audit(run: RunningFactory) -> list[dict]:
    return run.factory.services[0].app.admin_api.recent(1000)


def test_every_admin_endpoint_refuses_without_the_token_and_changes_nothing(admin_factory):
    level = logging.getLogger().level
    queue = admin_factory.factory.queues["ALPHA"]
    queue.paused = True  # so a refused resume would show
    for method, path, _action in ENDPOINTS:
        for token in (None, "wrong-token-of-some-length", TOKEN + "x"):
            answer = call(admin_factory, method, path, token=token, json={"level": "debug"})
            assert answer.status_code == 401, (path, token)
            assert answer.headers["Content-Type"] == "application/json"
            assert "token" in answer.json()["error"]
            assert "Bearer" in answer.headers["WWW-Authenticate"]
    assert not admin_factory.factory._stopping.is_set()
    assert queue.paused and logging.getLogger().level == level
    refused = audit(admin_factory)
    assert len(refused) == 3 * len(ENDPOINTS)
    assert {a["action"] for a in refused} == {action for _, _, action in ENDPOINTS}
    assert all(a["result"] == "refused" and a["status"] == 401 and a["client"] == "127.0.0.1" for a in refused)
    assert {a["detail"] for a in refused} == {"wrong token", "missing bearer token (Authorization: Bearer "
                                                            "<token from admin.tokenfile>)"}
    assert {a["target"] for a in refused if a["action"] in ("pause", "resume")} == {"ALPHA"}


def test_what_a_refused_client_sends_is_cut_and_cleaned(admin_factory):
    name = "Q%0Afake log line " + "x" * 5000
    assert call(admin_factory, "POST", f"queues/{name}/pause", token=None).status_code == 401
    (row,) = audit(admin_factory)
    assert row["target"] == "Q?fake log line " + "x" * 184 + "…"


def test_admin_errors_are_json(admin_factory):
    for method, path, status in [("GET", "reload", 405), ("POST", "config", 405), ("DELETE", "stop", 405),
                                 ("POST", "nothing", 404), ("GET", "queues/ALPHA/explode", 404)]:
        answer = call(admin_factory, method, path)
        assert answer.status_code == status, path
        assert answer.headers["Content-Type"] == "application/json" and answer.json()["error"]
    assert call(admin_factory, "GET", "reload").headers["Allow"] == "POST"
    assert call(admin_factory, "POST", "log").headers["Allow"] == "GET, HEAD"
    assert "queues/<name>/pause" in call(admin_factory, "POST", "nothing").json()["actions"]
    for query in ("lines=0", "lines=10001", "lines=many"):
        bad = call(admin_factory, "GET", "log?" + query)
        assert bad.status_code == 400 and "lines must be an integer from 1 to 10000" in bad.json()["error"]
    assert call(admin_factory, "GET", "audit?limit=-1").status_code == 400
    assert audit(admin_factory)[0]["result"] == "failed" and audit(admin_factory)[0]["action"] == "audit"


def test_a_configured_queue_not_started_yet_answers_503_not_404(admin_factory):
    """The 2-hour Slurm soak paused a queue in the first second after a restart: 404 'no queue', as if
    it were not configured. A configured queue that has not started yet asks to retry."""
    factory = admin_factory.factory
    started = factory.queues
    factory.queues = {name: queue for name, queue in started.items() if name != "ALPHA"}
    try:
        answer = call(admin_factory, "POST", "queues/ALPHA/pause")
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert "starting" in answer.json()["error"]
        assert call(admin_factory, "POST", "queues/NOPE/pause").status_code == 404
    finally:
        factory.queues = started
    assert call(admin_factory, "POST", "queues/ALPHA/pause").status_code == 200
    assert started["ALPHA"].pause is not None


def test_config_is_the_effective_configuration_with_secrets_redacted(admin_factory):
    answer = call(admin_factory, "GET", "config")
    assert answer.status_code == 200
    text = answer.text
    for secret in [*SECRETS, str(admin_factory.token_file), TOKEN]:
        assert secret not in text, secret
    data = answer.json()
    assert data["path"] == str(admin_factory.confdir.root / "factory.conf")
    factory = data["factory"]
    assert factory["factoryid"] == "test-factory" and factory["logserver.port"] == admin_factory.port
    assert factory["admin.tokenfile"] == REDACTED
    alpha = data["queues"]["ALPHA"]
    assert alpha["enabled"] is True and alpha["values"]["apfqueue.sleep"] == 0.3
    assert alpha["values"]["executable.arguments"] == (
        f"--wrapperwmsqueue=ALPHA --wrapperplugin=local db_password={REDACTED}")
    profile = data["auth"]["atlas-token"]["values"]
    assert profile == {"plugin": "Token", "token.checktime": 600, "token.minlife": 3600,
                       "token.renewcommand": REDACTED, "token.timeout": 60.0, "token.tokenfile": REDACTED}
    assert data["monitor"]["apfmon"]["values"]["monitorurl"] == f"https://{REDACTED}@127.0.0.1:9/api"
    assert [a["action"] for a in audit(admin_factory)] == ["config"]


def test_effective_config_of_a_disabled_queue(confdir):
    confdir.write(local_queue("Q", confdir.spool, enabled="false"), factory="enablequeues = True\n")
    data = effective_config(confdir.load())
    assert data["queues"]["Q"]["enabled"] is False and data["auth"] == {}


def test_log_tail(admin_factory, tmp_path):
    root = logging.getLogger()
    saved = root.handlers[:]
    path = tmp_path / "factory.log"
    lines = [f"2026-12-01 22:40:{n % 60:02d},000 INFO    line {n}" for n in range(300)]
    path.write_text("\n".join(lines) + "\n")
    handler = logging.FileHandler(path, delay=True)
    handler.setLevel(logging.CRITICAL + 1)  # the test alone writes this file
    try:
        # logging to stdout: the API says so rather than failing
        root.handlers[:] = [logging.StreamHandler(sys.stdout)]
        answer = call(admin_factory, "GET", "log")
        assert answer.status_code == 409 and answer.json()["log_target"] == "stdout"
        assert "the factory logs to stdout, not to a file" in answer.json()["error"]
        root.handlers[:] = [handler]
        answer = call(admin_factory, "GET", "log?lines=5")
        assert answer.status_code == 200
        assert answer.json() == {"file": str(path), "lines": lines[-5:], "cut": False}
        assert call(admin_factory, "GET", "log").json()["lines"] == lines[-100:]
        assert call(admin_factory, "GET", "log?lines=10000").json()["lines"] == lines
    finally:
        root.handlers[:] = saved
        handler.close()
    assert [(a["target"], a["result"]) for a in reversed(audit(admin_factory))] == [
        ("100", "failed"), ("5", "ok"), ("100", "ok"), ("10000", "ok")]


def test_tail_is_bounded(tmp_path: Path):
    path = tmp_path / "log"
    path.write_bytes(b"")
    assert tail(str(path), 10) == ([], False)
    path.write_bytes(b"a\nb\nc")  # no newline at the end
    assert tail(str(path), 2) == (["b", "c"], False)
    assert tail(str(path), 10) == (["a", "b", "c"], False)
    lines = [f"{n:05d} " + "x" * 94 for n in range(2000)]  # 100 bytes a line with its newline
    path.write_text("\n".join(lines) + "\n")
    assert tail(str(path), 1500) == (lines[-1500:], False)
    # 10,000 bytes at most: 99 whole lines, the first one read is cut and dropped
    found, cut = tail(str(path), 1500, max_bytes=10000)
    assert found == lines[-99:] and cut
    path.write_bytes(b"x" * 300000 + b"\nlast\n")  # a huge line: never more than max_bytes read
    assert tail(str(path), 5, max_bytes=1000) == (["last"], True)


def test_stop_is_audited_and_stops_the_factory(admin_factory):
    answer = call(admin_factory, "POST", "stop")
    assert answer.status_code == 202 and answer.json()["stopping"] is True
    assert admin_factory.factory._stopping.is_set()
    assert audit(admin_factory)[0] | {"time": None} == {"time": None, "client": "127.0.0.1", "action": "stop",
                                                 "target": None, "result": "ok", "status": 202, "detail": ""}


def test_status_page_shows_the_admin_actions(admin_factory):
    assert "No admin actions in the last 14 days" in requests.get(admin_factory.url + "/", timeout=30).text
    call(admin_factory, "POST", "queues/BETA/pause")
    call(admin_factory, "POST", "reload", token="wrong-token-of-some-length")
    page = requests.get(admin_factory.url + "/", timeout=30).text
    rows = page.split('id="admin-actions"')[1].split("</table>")[0].split("<tr>")[2:]
    assert len(rows) == 2
    assert "reload" in rows[0] and "refused" in rows[0] and "wrong token" in rows[0]
    assert "pause" in rows[1] and "BETA" in rows[1] and "127.0.0.1" in rows[1]


# ---------------------------------------------------------------- a real daemon, restarted


def apf_run(capsys, *argv: str) -> tuple[int, str, str]:
    code = apf.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_apf_commands_and_the_audit_trail_survive_a_restart(confdir, tmp_path, capsys):
    port = free_port()
    token_file = tmp_path / "admin.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    confdir.write(local_queue("Q1", confdir.spool), auth=AUTH, factory=(
        f"logserver.enabled = True\nlogserver.port = {port}\nadmin.tokenfile = {token_file}\n"))
    conf = ["--conf", str(confdir.root / "factory.conf")]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "first.log"

    def up() -> bool:
        try:
            return requests.get(url + "/api/v1/factory", timeout=5).ok
        except requests.ConnectionError:
            return False

    first = daemon(confdir, log)
    second = None
    try:
        wait_for(up, what="the first factory's web server")
        code, out, err = apf_run(capsys, "config", *conf)
        assert code == 0, err
        assert "[Factory]" in out and "[Q1]" in out and f"admin.tokenfile = {REDACTED}" in out
        assert str(token_file) not in out and "renew-hunter2" not in out
        # an idle queue's repeated cycles are DEBUG lines: its first cycle is the INFO line to wait for
        wait_for(lambda: "queue Q1 cycle 1:" in log.read_text() and len(log.read_text().splitlines()) >= 3,
                 what="the first cycle in the log")
        code, out, err = apf_run(capsys, "log", "-n", "3", *conf)
        assert code == 0, err
        shown, written = out.splitlines(), log.read_text().splitlines()
        assert len(shown) == 3 and any(written[i:i + 3] == shown for i in range(len(written)))
        for command in (["pause", "Q1"], ["resume", "Q1"], ["loglevel", "debug"], ["reload"]):
            code, out, err = apf_run(capsys, *command, *conf)
            assert code == 0, (command, err)
        refused = requests.post(url + ADMIN + "stop", timeout=30)
        assert refused.status_code == 401 and first.poll() is None
        code, out, err = apf_run(capsys, "stop", *conf)
        assert code == 0 and "stopping" in out, err
        assert first.wait(60) == 0
        assert "factory test-factory stopped" in log.read_text()

        # the second factory logs to stdout: no log file to show, said in JSON
        second = daemon(confdir, tmp_path / "unused.log", "--log", "stdout")
        wait_for(up, what="the second factory's web server")
        code, out, err = apf_run(capsys, "log", *conf)
        assert code == 1 and "409" in err and "logs to stdout, not to a file" in err
        code, out, err = apf_run(capsys, "audit", "--json", *conf)
        assert code == 0, err
        actions = json.loads(out)["actions"]
        assert [(a["action"], a["target"], a["result"], a["status"]) for a in reversed(actions)] == [
            ("config", None, "ok", 200), ("log", "3", "ok", 200), ("pause", "Q1", "ok", 200),
            ("resume", "Q1", "ok", 200), ("loglevel", "debug", "ok", 200), ("reload", None, "ok", 200),
            ("stop", None, "refused", 401), ("stop", None, "ok", 202), ("log", "100", "failed", 409)]
        assert all(a["client"] == "127.0.0.1" and a["time"].endswith("Z") for a in actions)
        code, out, err = apf_run(capsys, "audit", *conf)
        assert code == 0 and out.splitlines()[0].split() == ["TIME", "CLIENT", "ACTION", "TARGET", "RESULT",
                                                             "DETAIL"]
        assert out.splitlines()[2].split()[1:5] == ["127.0.0.1", "audit", "50", "ok"]  # the call just before
        code, out, err = apf_run(capsys, "stop", *conf)
        assert code == 0, err
        assert second.wait(60) == 0
    finally:
        for process in (first, second):
            if process is not None:
                stop_process(process)
