"""Every critical cause alarms through every channel: a mail (a real SMTP server), a command hook (JSON on
stdin) and a webhook POST (a real HTTP server on 127.0.0.1); and no channel can hold up a cycle."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autopyfactory import alarms
from autopyfactory.config import ConfigError, load
from tests.conftest import fill, local_queue, small_tmpfs, wait_for
from tests.plugins_for_tests import BOOM, FILE_WMS
from tests.test_alarms import body, smtp  # noqa: F401 (the SMTP server fixture)
from tests.test_credentials import PROXY_LOCAL, jwt
from tests.web_support import start_factory

# the alarm command: one JSON object a line into the file it is given
HOOK = '''
import sys
alarm = sys.stdin.read()
with open(sys.argv[1], "a") as out:
    out.write(alarm if alarm.endswith("\\n") else alarm + "\\n")
'''

REFUSES = '''
from autopyfactory.interfaces import SubmitResult
from autopyfactory.plugins.batchsubmit.local import Local

class Refuses(Local):
    name = "Refuses"

    def submit(self, n):
        return SubmitResult(0, [], error="the CE refused the job: bad credentials")
'''

EXITS = '''
import os
from autopyfactory.config import Key
from autopyfactory.interfaces import SchedulerPlugin

class Exits(SchedulerPlugin):
    name = "Exits"
    keys = {"marker": Key("path", "")}

    def calc(self, n, info):
        if os.path.exists(self.options["marker"]):
            os.unlink(self.options["marker"])
            raise SystemExit("a plugin called sys.exit()")
        return 0, "Exits: 0"
'''


class Receiver:
    """A real HTTP server keeping every JSON body POSTed to it; ``fail_first`` answers 503 that many times,
    ``hang`` makes every answer wait that many seconds."""

    def __init__(self, fail_first: int = 0, hang: float = 0.0):
        self.bodies: list[dict] = []
        self.requests = 0
        self.fail_first, self.hang = fail_first, hang
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.hang:
                    time.sleep(receiver.hang)
                with receiver.lock:
                    receiver.requests += 1
                    failing = receiver.requests <= receiver.fail_first
                    if not failing:
                        receiver.bodies.append(json.loads(data))
                self.send_response(503 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alarms"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def about(self, queue: str, cause: str) -> list[dict]:
        with self.lock:
            return [b for b in self.bodies if b["queue"] == queue and b["cause"] == cause]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def hook_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_critical_cause_alarms_by_mail_command_and_webhook(confdir, smtp, receiver, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(alarms, "SWEEP", 0.2)
    hook, hook_out = tmp_path / "hook.py", tmp_path / "alarms.jsonl"
    hook.write_text(HOOK)
    wms_ok, wms_failing = tmp_path / "wms.json", tmp_path / "wms-failing.json"
    wms_ok.write_text(json.dumps({"REFUSED": 5}))
    wms_failing.write_text(json.dumps("fail"))  # the WMS answers 500: UNKNOWN's status is unknown
    token = tmp_path / "token"
    token.write_text(jwt(time.time() - 60))
    marker = tmp_path / "die"
    marker.touch()
    for name, code in (("filewms.py", FILE_WMS), ("boom.py", BOOM), ("refuses.py", REFUSES), ("exits.py", EXITS)):
        confdir.dropin(name, code)
    def file_wms(path: Path) -> dict[str, str]:
        return {"wmsstatusplugin": "FileWMS", "wmsstatus.filewms.path": str(path)}

    sections = (
        local_queue("BACKOFF", confdir.spool, **{"apfqueue.faultbackoff": "false"})
        + local_queue("UNKNOWN", confdir.spool, **file_wms(wms_failing))
        + local_queue("BOOMS", confdir.spool, schedplugin="Boom")
        + local_queue("REFUSED", confdir.spool, batchsubmitplugin="Refuses", **file_wms(wms_ok))
        + local_queue("DIES", confdir.spool, schedplugin="Exits", **{"sched.exits.marker": str(marker)})
        + local_queue("EXPIRED", confdir.spool, executable="/bin/true", batchsubmitplugin="ProxyLocal",
                      **{"batchsubmit.proxylocal.proxy": "tok"})
    )
    confdir.dropin("proxylocal.py", PROXY_LOCAL)
    with small_tmpfs(tmp_path / "store-fs", "4m") as store_fs:
        run = start_factory(
            confdir, {}, sections=sections,
            factory_extra=(f"factorySMTPServer = {smtp.address}\nalarms.interval = 0\nalarms.unknownafter = 0.5\n"
                           f"alarms.command = {sys.executable} {hook} {hook_out}\nalarms.webhook = {receiver.url}\n"
                           f"persistence.dbpath = {store_fs}/apf.sqlite\n"),
            auth=f"[tok]\nplugin = Token\ntoken.tokenfile = {token}\ntoken.checktime = 1\n")
        try:
            run.factory.queues["BACKOFF"].fault_backoff = "fault backoff: 9 of 10 pilots faulted"
            fill(store_fs)
            queues_conf, factory_conf = confdir.root / "queues.conf", confdir.root / "factory.conf"
            good_queues, good_factory = queues_conf.read_text(), factory_conf.read_text()
            queues_conf.write_text(good_queues + local_queue("BROKEN", confdir.spool, **{"apfqueue.sleep": "soon"}))
            assert run.factory.reload() == []  # one bad queue: the others go on, BROKEN is not started
            factory_conf.write_text(good_factory + "factory.sleep = soon\n")
            with pytest.raises(ConfigError):
                load(str(factory_conf))
            assert run.factory.reload() != []  # factory.conf itself is bad: the reload is rejected
            expected = [("BACKOFF", "fault backoff", "9 of 10 pilots faulted"),
                        ("UNKNOWN", "status unknown", "WMS status unknown"),
                        ("BOOMS", "cycle error", "ZeroDivisionError: boom"),
                        ("REFUSED", "submission failed", "the CE refused the job"),
                        ("DIES", "queue thread", "queue thread died (SystemExit"),
                        ("EXPIRED", "credential", "credential tok not usable"),
                        ("BROKEN", "configuration", "apfqueue.sleep"),
                        ("*", "reload rejected", "factory.sleep"),
                        ("*", "store", "cannot be written")]
            for queue, cause, reason in expected:
                what = "every queue" if queue == "*" else queue
                mail = wait_for(lambda q=what, c=cause: smtp.about(q, c), what=f"a mail for {queue} {cause}")[0]
                assert "critical" in mail["Subject"] and reason in body(mail), (queue, cause, body(mail))
                posted = wait_for(lambda q=queue, c=cause: receiver.about(q, c), what=f"a POST for {queue} {cause}")
                hooked = wait_for(lambda q=queue, c=cause: [a for a in hook_lines(hook_out)
                                                            if a["queue"] == q and a["cause"] == c],
                                  what=f"a hook call for {queue} {cause}")
                for alarm in (posted[0], hooked[0]):
                    assert alarm["level"] == "critical" and reason in alarm["reason"], alarm
                    assert alarm["factory"] == run.factory.config.factory_id and alarm["time"].endswith("Z")
            queues_conf.write_text(good_queues)
            factory_conf.write_text(good_factory)
            (store_fs / "filler").unlink()
            assert run.factory.reload() == []
            for queue, cause in (("*", "reload rejected"), ("*", "store"), ("BROKEN", "configuration")):
                wait_for(lambda q=queue, c=cause: any(a["level"] == "recovered" for a in receiver.about(q, c)),
                         what=f"the {cause} recovery POST")
        finally:
            run.stop()


def test_a_failing_webhook_is_tried_again_and_then_given_up(confdir, monkeypatch):
    failing = Receiver(fail_first=2)
    try:
        run = start_factory(confdir, {"Q": 0}, queue_extra={"apfqueue.faultbackoff": "false"},
                            factory_extra=f"alarms.interval = 0\nalarms.webhook = {failing.url}\nalarms.webhookretries = 3\n")
        webhook = next(s for s in run.factory.services if isinstance(s, alarms.Alarms)).channels["webhook"]
        try:
            run.factory.queues["Q"].fault_backoff = "fault backoff: test"
            wait_for(lambda: failing.about("Q", "fault backoff"), what="the POST after two 503s")
            # the receiver has the POST before the sender has read the answer and counted it
            wait_for(lambda: webhook.sent == 1, what="the sender to count the POST as sent")
            assert failing.requests == 3 and webhook.failed == 0
            failing.fail_first = 10**6  # from now on every try fails: 1 + 3 tries, then it is given up and counted
            run.factory.queues["Q"].fault_backoff = None
            wait_for(lambda: webhook.failed == 1, timeout=30, what="the recovery POST given up")
            assert failing.requests == 3 + 4
        finally:
            run.stop()
    finally:
        failing.close()


def test_a_hanging_hook_and_webhook_delay_no_cycle(confdir, tmp_path, monkeypatch):
    monkeypatch.setattr(alarms, "OUTBOX", 2)
    hanging = Receiver(hang=60)
    sleeper = tmp_path / "sleeps.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    try:
        run = start_factory(confdir, {"Q": 0}, queue_extra={"apfqueue.faultbackoff": "false"},
                            factory_extra=(f"alarms.interval = 0\nalarms.webhook = {hanging.url}\n"
                                           f"alarms.webhooktimeout = 30\nalarms.command = {sys.executable} {sleeper}\n"
                                           "alarms.commandtimeout = 30\n"))
        service = next(s for s in run.factory.services if isinstance(s, alarms.Alarms))
        queue = run.factory.queues["Q"]

        def flip(q, record):  # a new cause, or its end, after every cycle: one alarm each
            q.fault_backoff = None if q.fault_backoff else "fault backoff: test"

        run.factory.listeners.append(flip)
        try:
            start = queue.cycles
            wait_for(lambda: queue.cycles >= start + 20, what="20 cycles with the hook and the webhook hanging")
            for name in ("command", "webhook"):
                channel = service.channels[name]
                assert channel.sent == 0 and channel.dropped >= 20 - 2 - 1 - 1, (name, channel.dropped)
            assert max(r.duration for r in queue.recent_records(20)) < 5
        finally:
            run.factory.listeners.remove(flip)
            started = time.monotonic()
            run.stop()
            assert time.monotonic() - started < 20  # stopping does not wait for the hung channels
    finally:
        hanging.hang = 0
        hanging.close()


@pytest.mark.parametrize("key, value, expected", [
    ("alarms.webhook", "ftp://example.org/x", "not an http(s) URL"),
    ("alarms.webhook", "https://", "not an http(s) URL"),
    ("alarms.command", "/usr/bin/page 'unbalanced", "not a command line"),
    ("alarms.webhookretries", "-1", "too small"),
])
def test_bad_alarm_settings_name_the_key(confdir, key, value, expected):
    confdir.write(local_queue("Q", confdir.spool), factory=f"{key} = {value}\n")
    with pytest.raises(ConfigError) as error:
        load(str(confdir.root / "factory.conf"))
    text = str(error.value)
    assert "[Factory]" in text and key in text and expected in text, text
