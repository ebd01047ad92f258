"""What comes in from outside and what goes out, against a real daemon (issue 22, second round of attacks):
remote queueConf sources that hang or fail, secrets planted everywhere, absurd times, big bodies, floods."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import local_queue
from tests.remote_servers import Server, answer, trickle
from tests.test_alarms import EphemeralController, Inbox
from tests.test_daemon import Daemon, alive
from tests.waiting import wait_for
from tests.web_support import TOKEN, free_port

HTTP_TIMEOUT = 20  # seconds a test waits for an answer that must come at once (generous: the machine is shared)


@pytest.fixture
def daemon(confdir, tmp_path):
    d = Daemon(confdir, tmp_path)
    yield d
    d.stop_all()


class Site:
    """A daemon's configuration: Local queues, a web server with the admin API, a store in tmp."""

    def __init__(self, confdir, tmp_path: Path):
        self.confdir = confdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = tmp_path / "admin.token"
        self.token.write_text(TOKEN + "\n")
        self.token.chmod(0o600)
        self.store = tmp_path / "var" / "apf.sqlite"

    def write(self, queues: str, queue_conf: str = "queues.conf", factory: str = "") -> None:
        self.confdir.write(queues, factory=(
            f"logserver.enabled = True\nlogserver.port = {self.port}\nadmin.tokenfile = {self.token}\n"
            f"persistence.dbpath = {self.store}\n{factory}"))
        path = self.confdir.root / "factory.conf"
        path.write_text(path.read_text().replace("queueConf = queues.conf", f"queueConf = {queue_conf}"))

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=HTTP_TIMEOUT, **kwargs)

    def admin(self, action: str, **kwargs) -> requests.Response:
        return requests.post(f"{self.url}/api/v1/admin/{action}", headers={"Authorization": f"Bearer {TOKEN}"},
                             timeout=kwargs.pop("timeout", HTTP_TIMEOUT), **kwargs)


@pytest.fixture
def site(confdir, tmp_path):
    return Site(confdir, tmp_path)


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 keeping every mail."""
    inbox = Inbox()
    controller = EphemeralController(inbox)
    controller.start()
    inbox.address = f"127.0.0.1:{controller.port}"
    yield inbox
    controller.stop()


# ---------------------------------------------------------------- item 3: remote queueConf


def remote_queue(confdir) -> str:
    return local_queue("REMOTEQ", confdir.spool, executable="/bin/true")


def test_a_hung_remote_queueconf_holds_up_no_page_no_reload_and_no_stop(daemon, confdir, site):
    """Before: a SIGHUP reload fetching from a trickling server never ended, held the reload lock
    (SIGTERM ignored), and every admin reload took a web worker until all hung."""
    behaviour = {"serve": answer(remote_queue(confdir))}
    with Server(lambda server, conn: behaviour["serve"](server, conn)) as source:
        site.write(local_queue("LOCALQ", confdir.spool, executable="/bin/true"),
                   queue_conf=f"queues.conf, {source.url}", factory="config.remote.timeout = 600\n")
        assert daemon.run().returncode == 0
        pid = daemon.pid
        wait_for(lambda: daemon.logged("queue REMOTEQ cycle 1"), what="the remote queue's first cycle")

        behaviour["serve"] = trickle(0.5)
        fetched = source.connections
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: source.connections > fetched and source.sent > 0, what="the reload's fetch to trickle")
        size = daemon.log.stat().st_size
        assert site.get("/").status_code == 200
        assert site.get("/api/v1/queues").status_code == 200

        answers: list[int | str] = []

        def reload() -> None:
            try:
                answers.append(site.admin("reload").status_code)
            except requests.RequestException as exc:
                answers.append(type(exc).__name__)

        callers = [threading.Thread(target=reload) for _ in range(9)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(HTTP_TIMEOUT + 5)
        # one reload is under way (its fetch trickles), the others are told so at once
        assert answers.count(409) >= 8, answers
        assert site.get("/").status_code == 200  # no web worker is tied up
        wait_for(lambda: "queue LOCALQ cycle" in daemon.log.read_text()[size:], what="LOCALQ to keep cycling")

        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), what="the daemon to stop", timeout=120)
        assert time.monotonic() - started < 120  # not config.remote.timeout (600 s)
        assert daemon.logged("factory test-factory stopped")


def test_a_remote_queueconf_down_at_start_runs_from_its_last_good_copy(daemon, confdir, site):
    with Server(answer(remote_queue(confdir))) as source:
        url = source.url
        site.write(local_queue("LOCALQ", confdir.spool, executable="/bin/true"), queue_conf=f"queues.conf, {url}")
        assert daemon.run().returncode == 0
        pid = daemon.pid
        wait_for(lambda: daemon.logged("queue REMOTEQ cycle 1"), what="the remote queue's first cycle")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), what="the daemon to stop")
    cached = list(site.store.parent.glob("remote-*.cache"))
    assert len(cached) == 1 and "[REMOTEQ]" in cached[0].read_text()

    daemon.log.unlink()
    assert daemon.run().returncode == 0  # the source is gone now
    wait_for(lambda: daemon.logged("queue REMOTEQ cycle 1"), what="REMOTEQ from the cached copy")
    assert daemon.logged("using the last good copy")
    problems = site.get("/api/v1/factory").json()["problems"]
    assert any("using the last good copy" in p and url in p for p in problems), problems
    pid = daemon.pid
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to stop")


# ---------------------------------------------------------------- item 2: no secret leaves the process

SECRETS = {  # where each is planted: a value no output may show
    "PANDAPASS01": "PanDA URL userinfo", "PANDATOK02": "PanDA URL ?token=", "QINFOKEY03": "queueinfourl ?apikey=",
    "CONFPASS04": "queueConf URL userinfo", "CONFKEY05": "queueConf URL ?apikey=",
    "ARGPASS06": "-p", "ARGPASS07": "--pass", "ARGKEY08": "--apikey=", "ARGBEARER09": "Authorization: Bearer",
    "ARGSIG10": "--sig=", "ARGENV11": "X_API_KEY=", "ARGQUERY12": "?apikey= in an argument", "ARGTOK13": "--token",
    "ARGSECRET14": "MY_SECRET=", "ARGPW15": "--password=", "MONPASS16": "APFMon URL userinfo",
    "PAUSEPW17": "a pause reason", "BADTOK18": "a rejected value in queues.conf",
    "LOGURLPASS21": "baseLogDirUrl userinfo", "LOGURLTOK22": "baseLogDirUrl ?token=",
}
ARGUMENTS = ("--wrapperplugin=local -p ARGPASS06 --pass ARGPASS07 --apikey=ARGKEY08 "
             "-H 'Authorization: Bearer ARGBEARER09' --sig=ARGSIG10 X_API_KEY=ARGENV11 "
             "--url https://h.example.org/x?apikey=ARGQUERY12 --token ARGTOK13 MY_SECRET=ARGSECRET14 --password=ARGPW15")


def test_no_planted_secret_reaches_a_page_an_answer_a_mail_or_the_log(daemon, confdir, site, smtp):
    dead = free_port()  # nobody listens: every PanDA and APFMon call fails, and says so
    panda = (f"[PANDAQ]\nwmsqueue = SITE_A\nwmsstatusplugin = Panda\n"
             f"wmsstatus.panda.url = http://apf:PANDAPASS01@127.0.0.1:{dead}/api/v1?token=PANDATOK02\n"
             f"wmsstatus.panda.queueinfourl = http://127.0.0.1:{dead}/queues?apikey=QINFOKEY03\n"
             f"wmsstatus.panda.timeout = 0.5\nbatchstatusplugin = Local\nbatchsubmitplugin = Local\n"
             f"executable = /bin/true\nexecutable.arguments = {ARGUMENTS}\napfqueue.sleep = 0.3\n"
             f"monitorsection = apfmon\n")
    remote = local_queue("REMOTEQ", confdir.spool, executable="/bin/true",
                         **{"executable.arguments": ARGUMENTS.replace("%", "%%")})
    with Server(answer(remote)) as source:
        url = source.url.replace("http://", "http://cfg:CONFPASS04@") + "?apikey=CONFKEY05"
        site.write(panda, queue_conf=f"queues.conf, {url}", factory=(
            f"factorySMTPServer = {smtp.address}\nfactoryAdminEmail = ops@example.org\nalarms.interval = 0.5\n"
            f"alarms.unknownafter = 1\nwmsstatus.panda.sleep = 0.2\nwmsstatus.panda.maxage = 1\n"
            f"baseLogDirUrl = https://web:LOGURLPASS21@logs.example.org:8443/apf?token=LOGURLTOK22\n"))
        (confdir.root / "monitor.conf").write_text(
            f"[apfmon]\nmonitorplugin = APFMon\nmonitorurl = http://mon:MONPASS16@127.0.0.1:{dead}/api\n")
        confdir.work("REMOTEQ", 2)
        assert daemon.run().returncode == 0
        pid = daemon.pid
        wait_for(lambda: daemon.logged("queue REMOTEQ cycle 2") and daemon.logged("queue PANDAQ cycle 2"),
                 what="cycles of both queues")
        wait_for(lambda: smtp.about("PANDAQ", "status unknown"), what="the PanDA queue's alarm")
        assert site.admin("queues/REMOTEQ/pause", json={"reason": "downtime, password=PAUSEPW17"}).status_code == 200
        queues = confdir.root / "queues.conf"
        good = queues.read_text()
        queues.write_text(good.replace("apfqueue.sleep = 0.3", "apfqueue.sleep = --token BADTOK18"))
        assert site.admin("reload").status_code in (200, 400)  # rejected whole, or the queue alone is bad
        wait_for(lambda: daemon.logged("apfqueue.sleep"), what="the bad value to be reported")
        queues.write_text(good)
        assert site.admin("reload").status_code == 200

        outputs: dict[str, str] = {}
        admin = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/", "/queues/PANDAQ", "/queues/REMOTEQ", "/api/v1/factory", "/api/v1/queues",
                     "/api/v1/queues/PANDAQ?cycles=100", "/api/v1/queues/REMOTEQ?cycles=100", "/metrics",
                     "/robots.txt", "/no/such/page?token=x", "/history", "/api/v1/history",
                     "/queues/REMOTEQ/pilots?state=done", "/queues/PANDAQ/pilots?state=fault",
                     "/api/v1/queues/REMOTEQ/pilots?state=done", "/api/v1/queues/PANDAQ/history"):
            got = site.get(path)
            assert got.status_code == (404 if path.startswith("/no/") else 200), (path, got.status_code)
            outputs[path] = got.text
        for path in ("config", "log?lines=10000", "audit", "threads", "debug"):
            got = site.get(f"/api/v1/admin/{path}", headers=admin)
            assert got.status_code == 200, (path, got.status_code)
            outputs[f"admin {path}"] = got.text
        # the submit records beside the pilots' logs, served under /logs/ to anyone
        records = sorted(confdir.logs.rglob("*.jdl"))
        assert "REMOTEQ" in {p.parent.name for p in records}  # PANDAQ submits nothing: PanDA is down
        for record in records:
            path = "/logs/" + record.relative_to(confdir.logs).as_posix()
            got = site.get(path)
            assert got.status_code == 200 and "<redacted>" in got.text, (path, got.status_code)
            outputs[path] = got.text
        for number, mail in enumerate(smtp.messages):
            outputs[f"mail {number}"] = mail.as_string()
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), what="the daemon to stop")
    outputs["log file"] = daemon.log.read_text()

    leaks = [f"{secret} ({where}) in {name}" for name, text in outputs.items()
             for secret, where in SECRETS.items() if secret in text]
    assert not leaks, "\n".join(leaks)
    # the secrets were there to leak: their places show redacted values
    assert "<redacted>" in outputs["/queues/PANDAQ"] and "&lt;redacted&gt;" in outputs["/queues/PANDAQ"] or \
        "<redacted>" in outputs["admin config"]
    assert "--sig=<redacted>" in outputs["admin config"] and "cfg:" not in outputs["admin config"]
    assert "127.0.0.1" in outputs["log file"] and "<redacted>" in outputs["log file"]
    assert len(smtp.messages) >= 2


# ---------------------------------------------------------------- item 1: absurd times, damaged rows


def apf(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autopyfactory.cli.apf", *argv], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})


def all_views_answer(site: Site) -> None:
    for path in ("/", "/queues/Q1", "/api/v1/factory", "/api/v1/queues", "/api/v1/queues/Q1", "/metrics"):
        answer = site.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])


def test_an_absurd_pause_end_is_refused_and_a_damaged_stored_pause_never_stops_a_start(daemon, confdir, site):
    """Before: ``--until +99999999999999999999d`` was accepted, raised OverflowError when shown (every page
    and the API answered 500 from then on) and, stored, stopped the daemon from starting again."""
    site.write(local_queue("Q1", confdir.spool, executable="/bin/true")
               + local_queue("Q2", confdir.spool, executable="/bin/true"))
    conf = str(confdir.root / "factory.conf")
    assert daemon.run().returncode == 0
    pid = daemon.pid
    wait_for(lambda: daemon.logged("queue Q1 cycle 1"), what="Q1's first cycle")

    for until in ("+99999999999999999999d", "+366d", "99999-01-01T00:00Z", "9" * 400 + "s"):
        answer = site.admin("queues/Q1/pause", json={"until": until})
        assert answer.status_code == 400, (until, answer.text)
        done = apf("pause", "Q1", "--until", until, "--conf", conf)
        assert done.returncode == 2 and "--until" in done.stderr, (until, done)
    assert "more than 365 days ahead" in site.admin("queues/Q1/pause", json={"until": "+400d"}).json()["error"]
    assert site.admin("queues/Q1/pause", json={"until": "+364d"}).status_code == 200  # within the horizon
    audit = site.get("/api/v1/admin/audit", headers={"Authorization": f"Bearer {TOKEN}"}).json()["actions"]
    assert sum(1 for a in audit if a["action"] == "pause" and a["status"] == 400) >= 5
    all_views_answer(site)
    assert apf("status", "--conf", conf).returncode != 3
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to stop")

    # rows a damaged store (or an older version) may hold
    with sqlite3.connect(site.store) as db:
        db.execute("UPDATE queue_pause SET until = ?, since = 'yesterday' WHERE queue = 'Q1'", (1e300,))
        db.execute("INSERT INTO queue_pause (queue, mode, reason, since, until) VALUES ('Q2', 'frozen', 'x', 0, 'soon')")
    assert daemon.run().returncode == 0
    pid = daemon.pid
    wait_for(lambda: daemon.logged("queue Q2 cycle"), what="Q2 to cycle")
    assert daemon.logged("queue Q1: stored pause damaged") and daemon.logged("queue Q2: stored pause damaged")
    queues = {q["name"]: q for q in site.get("/api/v1/queues").json()["queues"]}
    # an operator's hold is never dropped by a damaged row: held until resumed, and said so
    assert queues["Q1"]["health"] == "paused" and queues["Q1"]["pause"]["until"] is None
    assert queues["Q2"]["health"] == "paused" and "damaged store row" in queues["Q2"]["pause"]["reason"]
    all_views_answer(site)
    assert site.admin("queues/Q2/resume").status_code == 200
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to stop")


# ---------------------------------------------------------------- item 12: big request bodies


def temp_files(pid: int, directory: Path) -> list[str]:
    """Files in ``directory`` the process has open (waitress's spooled bodies are unlinked at once)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def post_big(url_port: int, chunked: bool, sent_bytes: int, pid: int, tmpdir: Path) -> tuple[bytes, list[str]]:
    """POST a body said to be 100 MB (or chunked without end), sending ``sent_bytes`` of it at most;
    the answer's first bytes, and the temporary files the daemon had open meanwhile."""
    head = (b"POST /api/v1/admin/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
            + (b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % (100 * 1024 * 1024))
            + b"\r\n")
    block = b"x" * 65536
    seen: list[str] = []
    with socket.create_connection(("127.0.0.1", url_port), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < sent_bytes:
                sock.sendall(b"%x\r\n" % len(block) + block + b"\r\n" if chunked else block)
                sent += len(block)
                seen += temp_files(pid, tmpdir)
        except OSError:  # the server answered and closed: what we came for
            pass
        seen += temp_files(pid, tmpdir)
        answer = b""
        with contextlib.suppress(OSError):
            while len(answer) < 65536:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        return answer, seen


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_big_body_is_refused_before_it_is_buffered(daemon, confdir, site, tmp_path, monkeypatch, chunked):
    """Before: waitress buffered a body up to 1 GB (to a temporary file past 512 KB) and only then
    did the application refuse it: a 100 MB admin POST had written ~83 MB to /tmp before its 413."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    site.write(local_queue("Q1", confdir.spool, executable="/bin/true"))
    assert daemon.run().returncode == 0
    pid = daemon.pid
    # 8 MB sent of a body said to be 100 MB (or chunked): the answer comes before the rest is sent
    status, seen = post_big(site.port, chunked, 8 * 1024 * 1024, pid, tmpdir)
    assert status.startswith(b"HTTP/1.1 413"), status
    assert b'{"error": "request body larger than 65536 bytes"}' in status  # an API error, as every one is
    assert seen == [] and list(tmpdir.iterdir()) == []
    assert site.admin("loglevel", json={"level": "info"}).status_code == 200  # a small body is fine
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to stop")


# ---------------------------------------------------------------- item 9: floods of refused calls


def test_a_flood_of_refused_admin_calls_grows_the_log_by_a_line_per_client_and_minute(daemon, confdir, site):
    """Before: each refused call was a log line (+2.7 MB per 20 s of flood, ~490 MB an hour)."""
    site.write(local_queue("Q1", confdir.spool, executable="/bin/true"))
    assert daemon.run().returncode == 0
    pid = daemon.pid
    wait_for(lambda: daemon.logged("queue Q1 cycle 1"), what="Q1's first cycle")
    before = daemon.log.read_text()
    started = time.monotonic()
    calls = 400
    with requests.Session() as session:
        for n in range(calls):
            action = ("reload", "stop", "queues/Q1/pause", "loglevel")[n % 4]
            answer = session.post(f"{site.url}/api/v1/admin/{action}", headers={"Authorization": "Bearer wrong"},
                                  timeout=HTTP_TIMEOUT)
            assert answer.status_code == 401
    minutes = (time.monotonic() - started) / 60
    grown = daemon.log.read_text()[len(before):]
    refused = [line for line in grown.splitlines() if ": refused" in line]
    assert 1 <= len(refused) <= 2 + minutes, refused  # one line per client and started minute
    assert len(grown) < 20_000 + 2_000 * minutes, len(grown)  # was ~150 bytes a call
    audit = site.get("/api/v1/admin/audit?limit=10000", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert sum(1 for a in audit["actions"] if a["result"] == "refused") == calls  # each one is in the audit
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to stop")


def test_a_refused_start_names_the_failing_url_without_its_secrets(daemon, confdir, site):
    url = f"http://apf:STARTPASS19@127.0.0.1:{free_port()}/queues.conf?token=STARTTOK20"
    site.write(local_queue("Q1", confdir.spool, executable="/bin/true"), queue_conf=f"queues.conf, {url}",
               factory="config.remote.timeout = 5\n")
    done = daemon.run()
    assert done.returncode != 0 and "cannot fetch" in done.stderr and "127.0.0.1" in done.stderr, done
    assert "STARTPASS19" not in done.stderr + done.stdout and "STARTTOK20" not in done.stderr + done.stdout
    checked = apf("check-config", "--conf", str(confdir.root / "factory.conf"))
    assert checked.returncode == 2 and "cannot fetch" in checked.stdout
    assert "STARTPASS19" not in checked.stdout + checked.stderr and "STARTTOK20" not in checked.stdout


def test_damaged_rows_in_every_table_never_stop_a_start_or_a_view(daemon, confdir, site):
    site.write(local_queue("Q1", confdir.spool, executable="/bin/true"))
    confdir.work("Q1", 3)
    assert daemon.run().returncode == 0
    pid = daemon.pid
    wait_for(lambda: daemon.logged("queue Q1 cycle 3"), what="cycles of Q1")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to stop")
    with sqlite3.connect(site.store) as db:
        db.execute("UPDATE cycles SET started = 1e300, duration = -1e300 WHERE id = (SELECT max(id) FROM cycles)")
        db.execute("UPDATE cycles SET record = '{\"started\": \"yesterday\", \"number\": []}' "
                   "WHERE id = (SELECT min(id) FROM cycles)")
        db.execute("INSERT INTO pilots VALUES ('Q1', '9.0', 'test-factory', 'fault', 'x', 1e300, 'y')")
        db.execute("INSERT INTO pilots VALUES ('Q1', '9.1', 'test-factory', 'done', -1e300, 'soon', NULL)")
        db.execute("INSERT INTO admin_audit (time, client, action, target, result, status, detail) "
                   "VALUES (1e300, 'x', 'pause', 'Q1', 'ok', 200, 'far')")
        db.execute("INSERT INTO submissions (queue, time, kind, count, ids) VALUES ('Q1', 1e300, 'submit', -5, 'x')")
        db.execute("UPDATE queue_state SET last_submission = 1e300")
    size = daemon.log.stat().st_size
    assert daemon.run().returncode == 0
    pid = daemon.pid
    wait_for(lambda: "queue Q1 cycle 6" in daemon.log.read_text()[size:], what="Q1 to cycle again")
    for path in ("/", "/queues/Q1", "/history", "/queues/Q1/pilots?state=fault", "/queues/Q1/pilots?state=done",
                 "/api/v1/factory", "/api/v1/queues", "/api/v1/queues/Q1?cycles=100", "/api/v1/history",
                 "/api/v1/queues/Q1/history", "/api/v1/queues/Q1/pilots?state=fault", "/metrics"):
        answer = site.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    assert site.get("/api/v1/admin/audit", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert apf("status", "--conf", str(confdir.root / "factory.conf")).returncode != 3
    after = daemon.log.read_text()[size:]
    assert "Traceback" not in after and "a damaged row of table pilots is set aside" in after
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to stop")


def test_a_flood_of_page_requests_logs_the_busy_server_once_a_minute(daemon, confdir, site):
    """waitress warns "Task queue depth is N" for every request that finds its 8 workers busy."""
    site.write(local_queue("Q1", confdir.spool, executable="/bin/true"))
    assert daemon.run().returncode == 0
    pid = daemon.pid
    wait_for(lambda: daemon.logged("queue Q1 cycle 1"), what="Q1's first cycle")
    started = time.monotonic()

    def flood() -> None:
        with requests.Session() as session:
            for _ in range(15):
                session.get(f"{site.url}/api/v1/queues", timeout=HTTP_TIMEOUT)

    callers = [threading.Thread(target=flood) for _ in range(40)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(120)
    minutes = (time.monotonic() - started) / 60
    busy = [line for line in daemon.log.read_text().splitlines() if "Task queue depth" in line]
    assert len(busy) <= 1 + minutes + 1, busy
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to stop")
