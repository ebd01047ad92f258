"""Alarm mails, received over SMTP by a real server (aiosmtpd) on 127.0.0.1, from a real factory."""

from __future__ import annotations

import email
import logging
import socket
import threading
import time

import pytest
from aiosmtpd.controller import Controller

from autopyfactory import alarms
from autopyfactory.alarms import smtp_address
from tests.conftest import wait_for
from tests.test_credentials import PROXY_LOCAL, jwt
from tests.test_panda_factory import FAST, panda_queue
from tests.web_support import start_factory


class Inbox:
    """An aiosmtpd handler keeping every message received."""

    def __init__(self):
        self.messages: list[email.message.Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def about(self, queue: str, cause: str) -> list[email.message.Message]:
        with self.lock:
            return [m for m in self.messages if f" {queue} " in m["Subject"] and m["Subject"].endswith(f": {cause}")]


class EphemeralController(Controller):
    """aiosmtpd's Controller on a socket bound to port 0 (a free port the system chooses)."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self.sock.getsockname()[1])

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self.sock)


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = EphemeralController(inbox)
    controller.start()
    inbox.address = f"127.0.0.1:{controller.port}"
    yield inbox
    controller.stop()


def body(message) -> str:
    return message.get_payload(decode=True).decode()


def test_smtp_address():
    assert smtp_address("mail.example.org") == ("mail.example.org", 25)
    assert smtp_address("127.0.0.1:2525") == ("127.0.0.1", 2525)
    assert smtp_address("[::1]:2525") == ("::1", 2525)
    assert smtp_address("::1") == ("::1", 25)
    for bad in ("host:port", "host:0", ":25", "host:70000"):
        with pytest.raises(ValueError, match="host\\[:port\\]"):
            smtp_address(bad)


def test_critical_and_recovery_mails_for_credential_status_and_reload(confdir, smtp, panda, tmp_path):
    panda.mode = "http500"  # PANDA_Q: WMS status unknown
    token = tmp_path / "token"
    token.write_text(jwt(time.time() - 60))  # TOKEN_Q: expired a minute ago
    confdir.dropin("proxylocal.py", PROXY_LOCAL)
    token_q = local_queue_with_token(confdir)
    run = start_factory(
        confdir, {}, sections=panda_queue("PANDA_Q", panda.url) + token_q,
        factory_extra=f"factorySMTPServer = {smtp.address}\nalarms.interval = 0.5\nalarms.unknownafter = 1\n{FAST}",
        auth=f"[tok]\nplugin = Token\ntoken.tokenfile = {token}\ntoken.checktime = 1\n")
    factory_id = run.factory.config.factory_id
    try:
        (mail,) = wait_for(lambda: smtp.about("TOKEN_Q", "credential"), what="the credential alarm")
        assert mail["Subject"] == f"[APF {factory_id}] TOKEN_Q critical: credential"
        assert mail["To"] == "ops@example.org" and "credential tok not usable" in body(mail)
        assert "level: critical" in body(mail) and f"factory: {factory_id}" in body(mail)
        (mail,) = wait_for(lambda: smtp.about("PANDA_Q", "status unknown"), what="the status alarm")
        assert "critical" in mail["Subject"] and "WMS status unknown" in body(mail)

        token.write_text(jwt(time.time() + 86400))  # a fresh token: TOKEN_Q recovers
        mails = wait_for(lambda: len(smtp.about("TOKEN_Q", "credential")) == 2 and smtp.about("TOKEN_Q", "credential"),
                         what="the recovery mail")
        assert mails[1]["Subject"] == f"[APF {factory_id}] TOKEN_Q recovered: credential"
        panda.mode = "good"
        mails = wait_for(lambda: len(smtp.about("PANDA_Q", "status unknown")) == 2
                         and smtp.about("PANDA_Q", "status unknown"), what="PANDA_Q recovery")
        assert "recovered" in mails[1]["Subject"]

        queues = confdir.root / "queues.conf"
        text = queues.read_text()
        queues.write_text("a broken line\n" + text)  # a file that cannot be parsed: the reload is rejected
        assert run.factory.reload() != []
        (mail,) = wait_for(lambda: smtp.about("every queue", "reload rejected"), what="the reload alarm")
        assert "critical" in mail["Subject"] and "comes before any [section]" in body(mail)
        queues.write_text(text)
        assert run.factory.reload() == []
        wait_for(lambda: len(smtp.about("every queue", "reload rejected")) == 2, what="reload recovery")
        # each cause said exactly twice: critical, then recovered
        assert len(smtp.messages) == 6
    finally:
        run.stop()


# these tests set APFQueue.fault_backoff by hand to drive the alarms; the queue's own rule
# (off here, else it would set the attribute every cycle) is tested in test_fault_backoff.py
HAND_SET = {"apfqueue.faultbackoff": "false"}


def local_queue_with_token(confdir) -> str:
    from tests.conftest import local_queue

    section = local_queue("TOKEN_Q", confdir.spool, executable="/bin/true",
                          **{"batchsubmit.proxylocal.proxy": "tok"})
    return section.replace("batchsubmitplugin = Local", "batchsubmitplugin = ProxyLocal")


def test_one_mail_per_queue_and_cause_per_interval(confdir, smtp):
    run = start_factory(confdir, {"Q": 0}, queue_extra=HAND_SET, factory_extra=f"factorySMTPServer = {smtp.address}\n"
                                                           "alarms.interval = 3600\n")
    service = next(s for s in run.factory.services if isinstance(s, alarms.Alarms))
    queue = run.factory.queues["Q"]
    try:
        for _ in range(3):  # critical, gone, critical again: all within one interval
            queue.fault_backoff = "fault backoff: 8 of 8 pilots faulted, one probe pilot per cycle"
            wait_for(lambda start=queue.cycles: queue.cycles >= start + 3, what="3 cycles in fault backoff")
            queue.fault_backoff = None
            wait_for(lambda start=queue.cycles: queue.cycles >= start + 3, what="3 cycles without")
        mail_channel = service.channels["mail"]
        wait_for(lambda: mail_channel.outbox.empty() and mail_channel.sent == 1, what="the mail sent")
        (mail,) = smtp.messages
        assert mail["Subject"].endswith("Q critical: fault backoff") and "8 of 8 pilots faulted" in body(mail)
    finally:
        run.stop()


def test_the_interval_over_the_state_then_is_mailed(confdir, smtp):
    """A recovery inside the interval is told once the interval is over (not lost, not repeated)."""
    run = start_factory(confdir, {"Q": 0}, queue_extra=HAND_SET, factory_extra=f"factorySMTPServer = {smtp.address}\n"
                                                           "alarms.interval = 2\n")
    queue = run.factory.queues["Q"]
    try:
        queue.fault_backoff = "fault backoff: 5 of 6 pilots faulted"
        wait_for(lambda: smtp.about("Q", "fault backoff"), what="the critical mail")
        queue.fault_backoff = None  # within the interval: told when it is over
        mails = wait_for(lambda: len(smtp.about("Q", "fault backoff")) == 2 and smtp.about("Q", "fault backoff"),
                         what="the recovery mail after the interval")
        assert "recovered" in mails[1]["Subject"]
        sent = float(email.utils.parsedate_to_datetime(mails[1]["Date"]).timestamp())
        first = float(email.utils.parsedate_to_datetime(mails[0]["Date"]).timestamp())
        assert sent - first >= 1  # Date has whole seconds: at least the 2 s interval, less rounding
    finally:
        run.stop()


def test_a_dead_smtp_server_delays_no_cycle(confdir, monkeypatch, caplog):
    dead = socket.socket()  # accepts connections (the kernel's backlog) and never says a word
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)
    monkeypatch.setattr(alarms, "OUTBOX", 3)
    run = start_factory(confdir, {"Q": 0}, queue_extra=HAND_SET,
                        factory_extra=f"factorySMTPServer = 127.0.0.1:{dead.getsockname()[1]}\n"
                                      "alarms.interval = 0\n")
    service = next(s for s in run.factory.services if isinstance(s, alarms.Alarms)).channels["mail"]
    queue = run.factory.queues["Q"]

    def flip(q, record):  # a new cause, or its end, after every cycle: one mail each
        q.fault_backoff = None if q.fault_backoff else "fault backoff: test"

    run.factory.listeners.append(flip)
    try:
        with caplog.at_level(logging.ERROR, logger="autopyfactory.alarms"):
            start = queue.cycles
            wait_for(lambda: queue.cycles >= start + 20, what="20 cycles with the SMTP server silent")
            # the sender is still waiting for the server's greeting of the first mail: the cycles went on without it
            assert service.sent == 0 and service.failed == 0
            assert service.dropped >= 20 - 3 - 1 - 1
            assert any("alarm not sent" in r.getMessage() for r in caplog.records)
            longest = max(r.duration for r in queue.recent_records(20))
            print(f"longest of the last 20 cycles: {longest:.3f} s (SMTP timeout {alarms.SMTP_TIMEOUT:g} s)")
    finally:
        run.factory.listeners.remove(flip)
        run.stop()
        dead.close()
