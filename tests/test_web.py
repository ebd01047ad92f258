"""The web server of a real factory (Local plugins), over HTTP on a free port."""

from __future__ import annotations

import http.client
import logging
import os
import re
import time

import pytest
import requests

from autopyfactory.web.app import is_loopback
from tests.conftest import wait_for
from tests.web_support import TOKEN, RunningFactory, start_factory

QUEUES = {"ALPHA": 3, "BETA": 0}
SECRET = "top-secret-outside-baseLogDir"


@pytest.fixture
def web_factory(confdir):
    run = start_factory(confdir, QUEUES)
    yield run
    run.stop()


def get(run: RunningFactory, path: str, **kw) -> requests.Response:
    return requests.get(run.url + path, timeout=30, **kw)


def raw_get(run: RunningFactory, target: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET with the request target sent byte for byte (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=30)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def stable_counts(run: RunningFactory, name: str) -> dict:
    """The queue as the API shows it, once it agrees with the batch system's own count."""

    def agree():
        api = get(run, f"/api/v1/queues/{name}").json()
        real = run.batch.status([name], run.factory.config.factory_id)[name]
        mine = (api["pending"], api["running"], api["done_1h"], api["fault_1h"])
        if mine == (real.pending, real.running, real.done, real.fault) and len(api["cycles"]) >= 2:
            return api
        return None

    return wait_for(agree, what=f"API counts of {name} to match the batch system")


# ---------------------------------------------------------------- status JSON


def test_queue_json_matches_the_batch_system(web_factory):
    # 3 work items, at most 2 pilots running: 2 claim items and run, the rest wait
    wait_for(lambda: web_factory.batch.status(["ALPHA"], "test-factory")["ALPHA"].running == 2, what="2 running pilots")
    api = stable_counts(web_factory, "ALPHA")
    assert api["running"] == 2
    assert api["pending"] >= 1
    assert api["paused"] is False
    assert api["submitted_total"] == api["pending"] + api["running"] + api["done_1h"] + api["fault_1h"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", api["last_cycle"])
    cycles = api["cycles"]
    assert cycles and cycles[0]["number"] > cycles[-1]["number"]  # newest first
    assert sum(c["submitted"] for c in cycles) <= api["submitted_total"]
    assert cycles[0]["message"] == api["last_message"]
    assert "submitted" in " ".join(c["message"] for c in cycles)

    queues = get(web_factory, "/api/v1/queues").json()["queues"]
    assert [q["name"] for q in queues] == ["ALPHA", "BETA"]
    for q in queues:
        for key in ("name", "pending", "running", "exiting", "done_1h", "fault_1h", "paused",
                    "last_message", "last_cycle"):
            assert key in q
        assert "cycles" not in q
    beta = next(q for q in queues if q["name"] == "BETA")
    assert (beta["pending"], beta["running"]) == (0, 0)

    assert get(web_factory, "/api/v1/queues/NOPE").status_code == 404
    assert get(web_factory, "/api/v1/nothing").status_code == 404
    assert len(get(web_factory, "/api/v1/queues/ALPHA?cycles=1").json()["cycles"]) == 1


def test_factory_json(web_factory):
    data = get(web_factory, "/api/v1/factory").json()
    assert data["factory_id"] == "test-factory"
    assert data["version"] == web_factory.factory.version
    assert data["queue_count"] == 2
    assert data["admin"]["enabled"] is True
    kinds = {e["kind"] for e in data["endpoints"]}
    assert kinds == {"wmsstatus", "batchstatus"}
    wait_for(lambda: get(web_factory, "/api/v1/factory").json()["last_cycle"], what="a first cycle")


# ---------------------------------------------------------------- status page


def test_status_page_shows_every_queue(web_factory):
    stable_counts(web_factory, "ALPHA")
    page = get(web_factory, "/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "test-factory" in html and web_factory.factory.version in html
    for name in QUEUES:
        assert f'id="queue-{name}"' in html
    row = html.split('id="queue-ALPHA"')[1].split("</tr>")[0]
    assert '<td class="num running">2</td>' in row
    assert "<svg" in row and "<polyline" in row  # the plot, drawn on the server
    assert "<script" not in html and "http://" not in html.split("</head>")[0]  # nothing from elsewhere
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert f'href="/logs/{day}/ALPHA/"' in row


# ---------------------------------------------------------------- metrics


def metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{want}}}" if want else name) + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.M)
    assert found, f"{name}{{{want}}} not in /metrics"
    return float(found.group(1))


def test_metrics_names_and_values(web_factory):
    api = stable_counts(web_factory, "ALPHA")
    text = get(web_factory, "/metrics").text
    assert metric(text, "apf_queue_pilots", queue="ALPHA", state="running") == 2
    assert metric(text, "apf_queue_pilots", queue="ALPHA", state="pending") == api["pending"]
    assert metric(text, "apf_queue_pilots", queue="BETA", state="pending") == 0
    assert metric(text, "apf_submitted_total", queue="ALPHA") == api["submitted_total"]
    assert metric(text, "apf_cycle_errors_total", queue="ALPHA") == 0
    assert metric(text, "apf_cycle_duration_seconds_count", queue="ALPHA") >= api["cycle_count"] >= 2
    assert "# TYPE apf_credential_seconds_left gauge" in text
    assert metric(text, "apf_queue_paused", queue="ALPHA") == 0


def test_credential_metric(confdir):
    confdir.dropin("fakeauth.py", '''
        from autopyfactory.interfaces import AuthPlugin
        from autopyfactory.info import CredentialStatus

        class FakeAuth(AuthPlugin):
            """A credential with a fixed lifetime. Keys: none."""
            name = "FakeAuth"
            def check(self):
                return CredentialStatus(self.section.name, True, 7200.0, "fine")
        ''')
    run = start_factory(confdir, {"ALPHA": 0}, auth="[wlcg]\nplugin = FakeAuth\n")
    try:
        text = get(run, "/metrics").text
        assert 7000 < metric(text, "apf_credential_seconds_left", profile="wlcg") <= 7200
        assert metric(text, "apf_credential_ok", profile="wlcg") == 1
        table = get(run, "/").text.split('id="credentials"')[1].split("</table>")[0]
        # time left counts down between checks (CredentialService.status): 7199.x s shows as 120 min
        assert "wlcg" in table and ">ok<" in table and ("2.0 h" in table or "120 min" in table)
        assert get(run, "/api/v1/factory").json()["credentials"][0]["profile"] == "wlcg"
    finally:
        run.stop()


def test_two_factories_in_one_process_keep_their_own_metrics(web_factory, tmp_path):
    from tests.conftest import ConfDir

    (tmp_path / "other").mkdir()
    other = start_factory(ConfDir(tmp_path / "other"), {"GAMMA": 0},
                          factory_extra="logserver.allowrobots = True\n")
    try:
        mine, theirs = get(web_factory, "/metrics").text, get(other, "/metrics").text
        assert 'queue="ALPHA"' in mine and 'queue="GAMMA"' not in mine
        assert 'queue="GAMMA"' in theirs and 'queue="ALPHA"' not in theirs
        assert get(other, "/robots.txt").text.startswith("User-agent: *\nDisallow: /api/")
    finally:
        other.stop()


# ---------------------------------------------------------------- logs


def test_pilot_logs_are_served(web_factory):
    api = stable_counts(web_factory, "ALPHA")
    index = get(web_factory, api["logs"])
    assert index.status_code == 200 and index.headers["Content-Type"].startswith("text/html")
    cid = next(i for c in api["cycles"] for i in c["ids"])
    assert f'href="{cid}.out"' in index.text and f'href="{cid}.err"' in index.text
    logdir = os.path.join(web_factory.factory.config.get("baseLogDir"), api["logs"].split("/logs/")[1])

    def started():
        answer = get(web_factory, f"{api['logs']}{cid}.out")
        return answer if "started" in answer.text else None

    out = wait_for(started, what="the pilot's .out")
    assert out.status_code == 200
    assert out.headers["Content-Type"] == "text/plain; charset=utf-8"
    with open(os.path.join(logdir, f"{cid}.out"), "rb") as handle:
        assert out.content == handle.read()[: len(out.content)]
    assert f"pilot {cid} of ALPHA started" in out.text
    jdl = [name for name in os.listdir(logdir) if name.endswith(".jdl")][0]
    answer = get(web_factory, f"{api['logs']}{jdl}")
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8" and '"queue": "ALPHA"' in answer.text
    # a directory without its slash is redirected, the index lists the day
    day = api["logs"].split("/")[2]
    assert get(web_factory, f"/logs/{day}", allow_redirects=False).headers["Location"] == f"/logs/{day}/"
    assert "ALPHA/" in get(web_factory, f"/logs/{day}/").text
    assert f"{day}/" in get(web_factory, "/logs/").text


def test_content_types_and_ranges(web_factory):
    base = web_factory.confdir.logs / "manual"
    base.mkdir(parents=True)
    (base / "pilot.log").write_bytes(b"0123456789abcdefghij")
    (base / "page.html").write_text("<script>alert(1)</script>")
    for suffix in ("out", "err", "log", "jdl"):
        (base / f"x.{suffix}").write_text(suffix)
        answer = get(web_factory, f"/logs/manual/x.{suffix}")
        assert answer.headers["Content-Type"] == "text/plain; charset=utf-8" and answer.text == suffix
    # never HTML out of a pilot's directory
    assert get(web_factory, "/logs/manual/page.html").headers["Content-Type"] == "application/octet-stream"

    def ranged(spec):
        return get(web_factory, "/logs/manual/pilot.log", headers={"Range": spec})

    part = ranged("bytes=2-5")
    assert part.status_code == 206 and part.content == b"2345"
    assert part.headers["Content-Range"] == "bytes 2-5/20"
    assert ranged("bytes=15-").content == b"fghij"
    assert ranged("bytes=-3").content == b"hij"
    assert ranged("bytes=18-500").content == b"ij"
    gone = ranged("bytes=20-")
    assert gone.status_code == 416 and gone.headers["Content-Range"] == "bytes */20"
    whole = ranged("lines=1-2")
    assert whole.status_code == 200 and whole.content == b"0123456789abcdefghij"
    head = requests.head(web_factory.url + "/logs/manual/pilot.log", timeout=30)
    assert head.status_code == 200 and head.headers["Content-Length"] == "20" and head.content == b""


def test_nothing_outside_baselogdir_is_ever_served(web_factory, tmp_path):
    logs = web_factory.confdir.logs
    logs.mkdir(exist_ok=True)
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    (logs / "inside.out").write_text("inside")
    (logs / "evil.out").symlink_to(secret)
    (logs / "outside").symlink_to(tmp_path, target_is_directory=True)
    (logs / "good.out").symlink_to(logs / "inside.out")
    relative = os.path.relpath(secret, logs)
    attempts = [
        f"/logs/{relative}",
        "/logs/../secret.txt",
        "/logs/%2e%2e/secret.txt",
        "/logs/%2E%2E/%2e%2e/" + str(secret).lstrip("/"),
        "/logs/..%2fsecret.txt",
        "/logs/%2e%2e%2fsecret.txt",
        "/logs/..%5csecret.txt",
        "/logs/%252e%252e/secret.txt",
        "/logs/....//secret.txt",
        "/logs/./../secret.txt",
        "/logs/inside.out/../../secret.txt",
        f"/logs/{secret}",
        f"/logs//{secret}",
        f"/logs/%2f{str(secret).lstrip('/')}",
        "/logs//etc/passwd",
        "/logs/%2fetc%2fpasswd",
        "/logs/../../../../../../etc/passwd",
        "/logs/evil.out",
        "/logs/outside/secret.txt",
        "/logs/outside/",
        "/logs/secret.txt%00.out",
        "/../secret.txt",
        f"http://127.0.0.1:{web_factory.port}/logs/../secret.txt",
    ]
    for target in attempts:
        status, body = raw_get(web_factory, target)
        assert status == 404 or (status in (301, 400) and SECRET.encode() not in body), (target, status)
        assert SECRET.encode() not in body and b"root:" not in body, target
    # the listing does not show links that lead outside; links inside work
    listing = get(web_factory, "/logs/").text
    assert "inside.out" in listing and "good.out" in listing
    assert "evil.out" not in listing and "outside" not in listing
    assert get(web_factory, "/logs/good.out").text == "inside"


def test_robots_txt_disallows_crawling_by_default(web_factory):
    answer = get(web_factory, "/robots.txt")
    assert answer.status_code == 200 and answer.text == "User-agent: *\nDisallow: /\n"


def test_big_log_does_not_block_the_status_page(web_factory):
    """Ten readers stalled on a 200 MB log (more than the server's worker threads)."""
    big = web_factory.confdir.logs / "big"
    big.mkdir(parents=True)
    block = os.urandom(1 << 20)
    path = big / "huge.log"
    with open(path, "wb") as handle:
        for _ in range(200):
            handle.write(block)
    size = path.stat().st_size
    downloads = []
    try:
        for _ in range(10):
            answer = requests.get(web_factory.url + "/logs/big/huge.log", stream=True, timeout=60)
            assert answer.status_code == 200 and int(answer.headers["Content-Length"]) == size
            assert next(answer.iter_content(65536))  # started, then left hanging
            downloads.append(answer)
        for _ in range(3):
            assert get(web_factory, "/").status_code == 200
            assert get(web_factory, "/api/v1/queues").status_code == 200
            assert get(web_factory, "/metrics").status_code == 200
        tail = get(web_factory, "/logs/big/huge.log", headers={"Range": f"bytes={size - 100}-"})
        assert tail.status_code == 206 and tail.content == block[-100:]
        # a stalled download still completes, byte for byte
        got = 65536
        for chunk in downloads[0].iter_content(1 << 20):
            got += len(chunk)
        assert got == size
    finally:
        for answer in downloads:
            answer.close()


# ---------------------------------------------------------------- admin


def post(run: RunningFactory, path: str, token: str | None = TOKEN, headers: dict | None = None,
         **kw) -> requests.Response:
    headers = {**({"Authorization": f"Bearer {token}"} if token is not None else {}), **(headers or {})}
    return requests.post(run.url + "/api/v1/admin/" + path, headers=headers, timeout=60, **kw)


def test_admin_without_a_valid_token_changes_nothing(web_factory):
    queue = web_factory.factory.queues["ALPHA"]
    level = logging.getLogger().level
    for token in (None, "", "wrong-token-of-some-length", TOKEN[:-1], TOKEN + "x"):
        for path in ("queues/ALPHA/pause", "loglevel", "reload", "queues/NOPE/pause"):
            answer = post(web_factory, path, token=token, json={"level": "debug"})
            assert answer.status_code == 401, (token, path)
            assert "Bearer" in answer.headers["WWW-Authenticate"]
    answer = requests.post(web_factory.url + "/api/v1/admin/queues/ALPHA/pause", timeout=30,
                           headers={"Authorization": f"Basic {TOKEN}"})
    assert answer.status_code == 401
    assert queue.paused is False and logging.getLogger().level == level
    assert get(web_factory, "/api/v1/admin/reload").status_code == 405


def test_admin_pause_and_resume(web_factory):
    queue = web_factory.factory.queues["BETA"]
    stable_counts(web_factory, "BETA")
    assert post(web_factory, "queues/NOPE/pause").status_code == 404
    answer = post(web_factory, "queues/BETA/pause")
    assert answer.status_code == 200 and answer.json()["paused"] is True and queue.paused
    assert get(web_factory, "/api/v1/queues/BETA").json()["paused"] is True
    cycles = queue.cycles
    web_factory.confdir.work("BETA", 2)
    # paused: it keeps cycling and reporting, and submits nothing
    wait_for(lambda: queue.cycles >= cycles + 5 and "queue paused" in queue.records[0].message,
             what="paused cycles")
    assert queue.submitted_total == 0
    assert "queue paused" in get(web_factory, "/api/v1/queues/BETA").json()["last_message"]
    assert "> paused</span>" in get(web_factory, "/").text.split('id="queue-BETA"')[1].split("</tr>")[0]
    assert post(web_factory, "queues/BETA/resume").json()["paused"] is False
    wait_for(lambda: queue.submitted_total >= 2, what="submissions after resume")


def test_admin_loglevel(web_factory):
    root = logging.getLogger()
    before = root.level
    try:
        answer = post(web_factory, "loglevel", json={"level": "debug"})
        assert answer.status_code == 200 and root.level == logging.DEBUG
        assert post(web_factory, "loglevel", data="level=warning",
                    headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 200
        assert root.level == logging.WARNING
        bad = post(web_factory, "loglevel", json={"level": "chatty"})
        assert bad.status_code == 400 and "expected one of" in bad.json()["error"]
        assert root.level == logging.WARNING
    finally:
        root.setLevel(before)


def test_admin_reload(web_factory):
    good = post(web_factory, "reload")
    assert good.status_code == 200, good.text
    queues = web_factory.confdir.root / "queues.conf"
    text = queues.read_text()
    queues.write_text("a broken line\n" + text)  # a file that cannot be parsed: refused whole
    try:
        bad = post(web_factory, "reload")
        assert bad.status_code == 400
        problems = bad.json()["problems"]
        assert any("cannot parse line 1" in p for p in problems), problems
        # the running configuration stays
        assert set(web_factory.factory.queues) == set(QUEUES)
        assert web_factory.factory.queues["ALPHA"].sleep == 0.3
    finally:
        queues.write_text(text)


def test_admin_refuses_a_token_file_others_can_read(web_factory):
    queue = web_factory.factory.queues["ALPHA"]
    web_factory.token_file.chmod(0o644)
    try:
        answer = post(web_factory, "queues/ALPHA/pause")
        assert answer.status_code == 403 and "chmod 600" in answer.json()["error"]
        assert queue.paused is False
        assert get(web_factory, "/api/v1/factory").json()["admin"]["enabled"] is False
    finally:
        web_factory.token_file.chmod(0o600)
    assert post(web_factory, "queues/ALPHA/pause").status_code == 200


def test_admin_is_for_loopback_clients_only(web_factory):
    app = web_factory.factory.services[0].app
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/admin/queues/ALPHA/pause",
               "REMOTE_ADDR": "192.0.2.7", "HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    seen = []
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    assert seen == ["403 Forbidden"] and b"loopback" in body
    assert web_factory.factory.queues["ALPHA"].paused is False
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.2")
    assert not is_loopback("10.0.0.1") and not is_loopback("") and not is_loopback(None)


def test_a_port_in_use_leaves_the_factory_running(confdir, caplog):
    import socket

    from tests.web_support import free_port

    taken = socket.socket()
    taken.bind(("127.0.0.1", free_port()))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        run = start_factory(confdir, {"ALPHA": 1}, port=port)
        try:
            web = run.factory.services[0]
            assert web.port is None and "cannot listen on 127.0.0.1:" in web.error
            assert any("runs without its web server" in r.getMessage() for r in caplog.records)
            wait_for(lambda: run.factory.queues["ALPHA"].submitted_total >= 1, what="a submission")
        finally:
            run.stop()
    finally:
        taken.close()


def test_last_reload_time_outcome_and_problems_in_the_api_and_on_the_page(web_factory):
    assert get(web_factory, "/api/v1/factory").json()["last_reload"] is None
    assert "none since start" in get(web_factory, "/").text
    queues = web_factory.confdir.root / "queues.conf"
    text = queues.read_text()
    queues.write_text("a broken line\n" + text)
    try:
        assert post(web_factory, "reload").status_code == 400
    finally:
        queues.write_text(text)
    last = get(web_factory, "/api/v1/factory").json()["last_reload"]
    assert {"time", "ok", "problems"} <= set(last) and last["ok"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", last["time"])
    assert any("cannot parse line 1" in p and "\n" not in p for p in last["problems"]), last
    page = get(web_factory, "/").text.split('id="last-reload"')[1].split("</div>")[0]
    assert last["time"] in page and "rejected" in page and "cannot parse line 1" in page
    assert post(web_factory, "reload").status_code == 200
    last = get(web_factory, "/api/v1/factory").json()["last_reload"]
    assert last["ok"] is True and last["problems"] == []
    assert "applied" in get(web_factory, "/").text.split('id="last-reload"')[1].split("</div>")[0]


def test_queue_page(web_factory):
    stable_counts(web_factory, "ALPHA")
    page = get(web_factory, "/queues/ALPHA")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "<script" not in html and 'class="chart"' in html and 'class="xtick"' in html
    assert 'id="cycles"' in html and 'class="chain wide"' in html and "Ready" in html
    config = html.split('id="config"')[1].split("</table>")[0]
    assert "<td>batchsubmitplugin</td><td>Local</td>" in config
    # the status page links each queue name to its page
    assert 'href="/queues/ALPHA"' in get(web_factory, "/").text
    assert get(web_factory, "/queues/NOPE").status_code == 404
    assert get(web_factory, "/queues/%3Cscript%3E").status_code == 404


def test_status_page_puts_problems_first(web_factory):
    stable_counts(web_factory, "ALPHA")
    web_factory.factory.queues["BETA"].fault_backoff = "fault backoff: 8 of 8 pilots faulted"
    try:
        html = get(web_factory, "/").text
        rows = re.findall(r'data-queue="(\w+)" data-health="(\w+)"', html)
        assert rows == [("BETA", "critical"), ("ALPHA", "ok")], rows
        assert "fault backoff: 8 of 8 pilots faulted" in html.split('id="queue-BETA"')[1].split("</tr>")[0]
    finally:
        web_factory.factory.queues["BETA"].fault_backoff = None
    rows = re.findall(r'data-queue="(\w+)" data-health="(\w+)"', get(web_factory, "/").text)
    assert [name for name, _ in rows] == ["ALPHA", "BETA"]  # all well: by name


def test_queue_page_config_hides_secrets():
    from autopyfactory.web.app import shown_config

    shown = dict(shown_config({"batchsubmit.condorce.proxy": "atlas", "executable": "/bin/pilot",
                               "executable.arguments": "--url https://u:hunter2@example.org", "schedplugin": ["Ready"]}))
    assert shown["executable"] == "/bin/pilot" and shown["schedplugin"] == "Ready"
    assert "hunter2" not in shown["executable.arguments"]
