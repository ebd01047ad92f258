"""Alarms: the factory tells its admin when a queue (or the factory) turns critical, and when it recovers.

Every cause that makes a queue critical (autopyfactory.health.critical_causes) can alarm:

    queue thread        the queue's thread died (it is restarted) or is not running
    fault backoff       most of its recent pilots faulted: it submits probe pilots only
    credential          its credential is not usable, or expires within alarms.credentialexpiry
    status unknown      its WMS or batch status has been unknown for longer than alarms.unknownafter
    cycle error         its last cycle failed with an error
    submission failed   its last submission failed
    configuration       its section in the queue files is invalid: it is not started (the others are)
    configuration       its section of queues.conf has errors: not started, or (after a
                        reload) still running its previous one; looked at after start
                        and after every applied reload

and, for the whole factory (queue "*"):

    reload rejected     the last reload was rejected
    store               the persistence store cannot be written (or opened)
    queue source        a remote queueConf is down: its queues run from the last good copy

A cause that starts gives one "critical" alarm, a cause that ends one
"recovered" alarm; at most one per queue and cause per ``alarms.interval``
(a change within the interval is told when it is over, if it still holds).
A paused or drained queue raises nothing new.

Each alarm goes out through every channel that is configured:

    mail       factorySMTPServer + factoryAdminEmail (SMTP)
    command    alarms.command: run without a shell, the alarm as JSON on stdin,
               killed after alarms.commandtimeout
    webhook    alarms.webhook: the alarm as JSON in a POST, alarms.webhooktimeout
               per try, alarms.webhookretries more tries on failure (1, 2, 4 … s apart)

The JSON of an alarm: ``{"factory", "host", "queue", "level", "cause", "reason", "time", "epoch"}``
(``level`` is ``critical`` or ``recovered``; ``queue`` is ``"*"`` for a factory-wide cause).

Deciding costs no I/O: it runs after every cycle of a queue, and every
``SWEEP`` seconds for what has no cycle (a dead thread, the factory-wide
causes). Each channel sends from a thread of its own with a bounded outbox:
a slow or dead SMTP server, command or web server never delays a cycle nor
another channel; when an outbox is full, the alarm is dropped there and logged.
"""

from __future__ import annotations

import email.utils
import json
import logging
import queue as queues
import smtplib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING

import requests

from autopyfactory import commands, tls
from autopyfactory.health import critical_causes, factory_causes
from autopyfactory.redact import redact
from autopyfactory.timefmt import iso
from autopyfactory.tls import CAMissing, ca_trust

if TYPE_CHECKING:
    from autopyfactory.queue import APFQueue
    from autopyfactory.records import CycleRecord
    from autopyfactory.view import FactoryView

log = logging.getLogger(__name__)

OUTBOX = 100  # alarms waiting in one channel at most; more are dropped (and logged)
SMTP_TIMEOUT = 30.0  # seconds for each exchange with the SMTP server
SWEEP = 15.0  # seconds between looks at what has no cycle (dead queue threads, factory-wide causes)
MAX_RETRY_WAIT = 30.0  # seconds between webhook tries at most
FACTORY_WIDE = "*"  # the queue name of a factory-wide cause
CAUSES = ("queue thread", "fault backoff", "credential", "status unknown", "cycle error", "submission failed")
FACTORY_CAUSES = ("reload rejected", "store", "queue source")


@dataclass(frozen=True)
class Alarm:
    factory: str
    host: str
    queue: str
    level: str  # critical | recovered
    cause: str
    reason: str
    epoch: float

    @property
    def what(self) -> str:
        return "every queue" if self.queue == FACTORY_WIDE else self.queue

    @property
    def subject(self) -> str:
        return f"[APF {self.factory}] {self.what} {self.level}: {self.cause}"

    def to_json(self) -> dict:
        return {**asdict(self), "time": iso(self.epoch)}


@dataclass
class _Said:
    """What the admin was last told of one queue and cause."""

    critical: bool = False
    when: float | None = None


def smtp_address(value: str) -> tuple[str, int]:
    """``host[:port]`` (``[v6]:port`` too) as (host, port); port 25 by default. ValueError if malformed."""
    text = value.strip()
    host, port = text, "25"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "25"
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host[:port], got {value!r}")
    return host, int(port)


class Channel:
    """One way out for alarms, with its own thread and bounded outbox.

    ``configured()`` says whether the configuration in force asks for it; ``deliver(alarm)``
    sends one alarm and raises on failure (the failure is logged, the alarm not retried here).
    """

    def __init__(self, name: str, configured: Callable[[], bool], deliver: Callable[[Alarm], None]):
        self.name = name
        self.configured = configured
        self.deliver = deliver
        self.outbox: queues.Queue[Alarm | None] = queues.Queue(maxsize=OUTBOX)
        self.sent = self.dropped = self.failed = 0
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def post(self, alarm: Alarm) -> None:
        """Hand the alarm to the sender thread; never waits."""
        try:
            self.outbox.put_nowait(alarm)
        except queues.Full:
            self.dropped += 1
            log.error("alarm not sent by %s, %d alarms already waiting: %s", self.name, OUTBOX, alarm.subject)

    def _loop(self) -> None:
        while True:
            alarm = self.outbox.get()
            if alarm is None:
                return
            try:
                self.deliver(alarm)
                self.sent += 1
            except Exception as exc:  # a channel's failure is logged, never raised into the factory
                self.failed += 1
                log.error("alarm %s failed: %s: %s (%s)", self.name, type(exc).__name__, exc, alarm.subject)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"alarms-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the alarm being sent; alarms still waiting are dropped (a daemon thread never holds up exit)."""
        self.stopping.set()
        waiting = 0
        while True:
            try:
                waiting += self.outbox.get_nowait() is not None
            except queues.Empty:
                break
        self.outbox.put_nowait(None)
        if waiting:
            log.warning("stopping: %d alarm(s) not sent by %s", waiting, self.name)
        if self._thread is not None:
            self._thread.join(1.0)


class Alarms:
    """Decides which alarms to raise (no I/O) and hands them to every configured channel."""

    def __init__(self, factory: FactoryView):
        self.factory = factory
        self.channels = {
            "mail": Channel("mail", self._mail_configured, self._send_mail),
            "command": Channel("command", lambda: bool(self._config("alarms.command")), self._run_command),
            "webhook": Channel("webhook", lambda: bool(self._config("alarms.webhook")), self._post_webhook),
        }
        self._said: dict[tuple[str, str], _Said] = {}
        self._unknown_since: dict[str, float] = {}
        self._enabled_for: object = None  # the config ``enabled`` was worked out for (a reload replaces it)
        self._enabled = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def _config(self, key: str):
        return self.factory.config.get(key)

    def _mail_configured(self) -> bool:
        return bool(self._config("factorySMTPServer") and self._config("factoryAdminEmail"))

    # ------------------------------------------------------------ deciding
    @property
    def enabled(self) -> bool:
        """Some channel is configured (asked after every cycle of every queue: worked out once per config)."""
        config = self.factory.config
        if self._enabled_for is not config:
            self._enabled = any(channel.configured() for channel in self.channels.values())
            self._enabled_for = config
        return self._enabled

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.channels.values())

    def cycle_done(self, queue: APFQueue, record: CycleRecord) -> None:
        """A cycle listener: compare the queue's causes with what the admin was told."""
        if not self.enabled:
            return
        now = time.time()
        causes = self.causes(queue, record, now)
        with self._lock:
            if queue.pause is None:
                for cause in CAUSES:
                    self._compare(queue.name, cause, causes.get(cause), now)
            self._factory_wide(now)

    def sweep(self) -> None:
        """What no cycle tells: a queue thread that died or stopped, and the factory-wide causes."""
        if not self.enabled:
            return
        now = time.time()
        with self._lock:
            for name, queue in list(self.factory.queues.items()):
                if queue.pause is None:
                    found = dict(critical_causes(queue))
                    self._compare(name, "queue thread", found.get("queue thread"), now)
            self._factory_wide(now)

    def _factory_wide(self, now: float) -> None:
        reload = self.factory.last_reload
        rejected = None if not reload or reload.get("ok") else \
            "; ".join(reload.get("problems") or []) or "the configuration has errors"
        self._compare(FACTORY_WIDE, "reload rejected", rejected, now)
        causes: dict[str, list[str]] = {}
        for cause, reason in factory_causes(self.factory):
            causes.setdefault(cause, []).append(reason)
        for cause in FACTORY_CAUSES[1:]:
            self._compare(FACTORY_WIDE, cause, "; ".join(causes[cause]) if cause in causes else None, now)
        invalid = getattr(self.factory.config, "invalid", None) or {}  # queues not started: their section is bad
        told = {name for (name, cause), said in self._said.items() if cause == "configuration" and said.critical}
        for name in sorted(set(invalid) | told):
            problems = invalid.get(name)
            self._compare(name, "configuration", "; ".join(map(str, problems)) if problems else None, now)

    def config_checked(self) -> None:
        """A config listener (after start and every applied reload): one alarm per queue whose
        section is invalid, one "recovered" when it is valid again (or gone)."""
        if not self.enabled:
            return
        config = self.factory.config
        now = time.time()
        with self._lock:
            names = set(config.invalid) | {name for (name, cause) in self._said if cause == "configuration"}
            for name in sorted(names):
                qconfig = config.queues.get(name)
                enabled = qconfig is None or qconfig.enabled
                self._compare(name, "configuration", config.invalid_reason(name) if enabled else None, now)

    def causes(self, queue: APFQueue, record: CycleRecord, now: float) -> dict[str, str]:
        """{cause: reason} of what is wrong with the queue now (health's causes, with the alarms' delays)."""
        found = dict(critical_causes(queue))
        profile = queue.submitter.credential_profile
        state = queue.context.credentials.status(profile) if profile and queue.context.credentials else None
        if "credential" not in found and state is not None and state.seconds_left is not None and \
                state.seconds_left < self._config("alarms.credentialexpiry"):
            found["credential"] = f"credential {profile} expires in {state.seconds_left / 3600:.1f} h"
        if record.wms is None or record.batch is None:
            since = self._unknown_since.setdefault(queue.name, record.started)
            if now - since > self._config("alarms.unknownafter"):
                found["status unknown"] = f"since {iso(since)}: {found.get('status unknown', 'status unknown')}"
            else:
                found.pop("status unknown", None)
        else:
            self._unknown_since.pop(queue.name, None)
        return found

    def _compare(self, name: str, cause: str, reason: str | None, now: float) -> None:
        said = self._said.setdefault((name, cause), _Said())
        critical = reason is not None
        if critical == said.critical:
            return
        if said.when is not None and now - said.when < self._config("alarms.interval"):
            return  # told within the interval: told later, if it still holds
        said.critical, said.when = critical, now
        self.raise_alarm(Alarm(self.factory.config.factory_id, socket.getfqdn(), name,
                               "critical" if critical else "recovered", cause,
                               redact(reason or "the cause is gone"), now))  # every channel: no secret

    def raise_alarm(self, alarm: Alarm) -> None:
        """Hand the alarm to every configured channel; never waits."""
        log.warning("alarm: %s: %s", alarm.subject, alarm.reason)
        for channel in self.channels.values():
            if channel.configured():
                channel.post(alarm)

    # ------------------------------------------------------------ sending
    def message(self, alarm: Alarm) -> EmailMessage:
        mail = EmailMessage()
        mail["Subject"] = alarm.subject
        mail["From"] = self._config("alarms.sender") or f"autopyfactory@{socket.getfqdn()}"
        mail["To"] = self._config("factoryAdminEmail")
        mail["Date"] = email.utils.formatdate(alarm.epoch)
        mail.set_content(
            f"factory: {alarm.factory} on {alarm.host}\nqueue: {alarm.what}\nlevel: {alarm.level}\n"
            f"cause: {alarm.cause}\nreason: {alarm.reason}\ntime: {iso(alarm.epoch)}\n\n"
            f"At most one alarm per queue and cause every {self._config('alarms.interval'):g} s "
            f"([Factory] alarms.interval).\n")
        return mail

    def _send_mail(self, alarm: Alarm) -> None:
        server = self._config("factorySMTPServer")
        try:
            host, port = smtp_address(server)
            with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT) as smtp:
                smtp.send_message(self.message(alarm))
        except (OSError, ValueError, smtplib.SMTPException) as exc:
            raise RuntimeError(f"mail to {self._config('factoryAdminEmail')} through [Factory] factorySMTPServer "
                               f"{server}: {type(exc).__name__}: {exc}") from None

    def _run_command(self, alarm: Alarm) -> None:
        argv = self._config("alarms.command")
        result = commands.run(argv, timeout=self._config("alarms.commandtimeout"),
                              input=json.dumps(alarm.to_json()) + "\n")
        if not result.ok:
            raise RuntimeError(f"[Factory] alarms.command: {result.describe()}")

    def _post_webhook(self, alarm: Alarm) -> None:
        url = self._config("alarms.webhook")
        tries = 1 + self._config("alarms.webhookretries")
        cas = ca_trust()  # an https webhook is verified with the grid's CAs, as every HTTPS client
        why = ""
        for attempt in range(tries):
            if attempt:
                if self.channels["webhook"].stopping.wait(min(2.0 ** (attempt - 1), MAX_RETRY_WAIT)):
                    break
            try:
                with tls.session() as session:
                    answer = session.post(url, json=alarm.to_json(), timeout=self._config("alarms.webhooktimeout"),
                                          allow_redirects=False, verify=cas.verify(url))
            except CAMissing as exc:
                why = str(exc)
                break
            except requests.RequestException as exc:
                hint = cas.explain(exc)
                why = f"{type(exc).__name__}: {exc}" + (f" ({hint})" if hint else "")
                continue
            if 200 <= answer.status_code < 300:
                return
            why = f"HTTP {answer.status_code}"
        raise RuntimeError(f"[Factory] alarms.webhook {url}: {why} after {tries} tries")

    # ------------------------------------------------------------ life
    def _sweep_loop(self) -> None:
        while not self._stop.wait(SWEEP):
            try:
                self.sweep()
            except Exception:
                log.exception("alarms: looking at the queues failed")

    def start(self) -> None:
        for channel in self.channels.values():
            channel.start()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="alarms", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        for channel in self.channels.values():
            channel.stop()
        if self._sweeper is not None:
            self._sweeper.join(1.0)

    def __repr__(self) -> str:
        return "Alarms()"
