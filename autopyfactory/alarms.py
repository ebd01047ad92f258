"""Alarms: the factory emails its admin when a queue turns critical, and when it recovers.

With ``[Factory] factorySMTPServer`` (host[:port]) and ``factoryAdminEmail``
set, each queue is looked at after every one of its cycles for these causes:

    credential        its credential is not usable, or expires within alarms.credentialexpiry
    status unknown    its WMS or batch status has been unknown for longer than alarms.unknownafter
    fault backoff     most of its recent pilots faulted: it submits one probe pilot per cycle
    reload rejected   the last reload was rejected (factory-wide: queue "*")
    configuration     its section of queues.conf has errors: not started, or (after a
                      reload) still running its previous one; looked at after start
                      and after every applied reload

A cause that starts gets one "critical" mail, a cause that ends one
"recovered" mail; at most one mail per queue and cause per
``alarms.interval`` (a change within the interval is mailed when it is over,
if it still holds). A paused or drained queue raises nothing new.

Looking costs no I/O; mails go through one background thread with a bounded
outbox: a slow or dead SMTP server never delays a cycle; when the outbox is
full, a mail is dropped and logged.
"""

from __future__ import annotations

import email.utils
import logging
import queue as queues
import smtplib
import socket
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING

from autopyfactory.timefmt import iso

if TYPE_CHECKING:
    from autopyfactory.queue import APFQueue
    from autopyfactory.records import CycleRecord
    from autopyfactory.view import FactoryView

log = logging.getLogger(__name__)

OUTBOX = 100  # mails waiting for the sender at most; more are dropped (and logged)
SMTP_TIMEOUT = 30.0  # seconds for each exchange with the SMTP server
FACTORY_WIDE = "*"  # the queue name of a factory-wide cause
CAUSES = ("credential", "status unknown", "fault backoff")  # per queue; "reload rejected" is factory-wide


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


class Alarms:
    """Decides which mails to send (in the queues' threads, no I/O) and sends them (in its own thread)."""

    def __init__(self, factory: FactoryView):
        self.factory = factory
        self.outbox: queues.Queue[EmailMessage | None] = queues.Queue(maxsize=OUTBOX)
        self.sent = self.dropped = self.failed = 0
        self._said: dict[tuple[str, str], _Said] = {}
        self._unknown_since: dict[str, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ deciding
    @property
    def enabled(self) -> bool:
        config = self.factory.config
        return bool(config.get("factorySMTPServer") and config.get("factoryAdminEmail"))

    def cycle_done(self, queue: APFQueue, record: CycleRecord) -> None:
        """A cycle listener: compare the queue's causes with what the admin was told."""
        if not self.enabled:
            return
        now = time.time()
        causes = self.causes(queue, record, now)
        reload = self.factory.last_reload
        rejected = {} if not reload or reload.get("ok") else {
            "reload rejected": "; ".join(reload.get("problems") or []) or "the configuration has errors"}
        with self._lock:
            if queue.pause is None:
                for cause in CAUSES:
                    self._compare(queue.name, cause, causes.get(cause), now)
            self._compare(FACTORY_WIDE, "reload rejected", rejected.get("reload rejected"), now)

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
        """{cause: reason} of what is wrong with the queue now."""
        config = self.factory.config
        found = {}
        profile = queue.submitter.credential_profile
        state = queue.context.credentials.status(profile) if profile and queue.context.credentials else None
        if state is not None and not state.ok:
            found["credential"] = f"credential {profile} not usable: {state.message}"
        elif state is not None and state.seconds_left is not None and \
                state.seconds_left < config.get("alarms.credentialexpiry"):
            found["credential"] = f"credential {profile} expires in {state.seconds_left / 3600:.1f} h"
        if record.wms is None or record.batch is None:
            since = self._unknown_since.setdefault(queue.name, record.started)
            if now - since > config.get("alarms.unknownafter"):
                why = next((h for h in record.holds if "status unknown" in h), "status unknown")
                found["status unknown"] = f"since {iso(since)}: {why}"
        else:
            self._unknown_since.pop(queue.name, None)
        if queue.fault_backoff:
            found["fault backoff"] = queue.fault_backoff
        return found

    def _compare(self, name: str, cause: str, reason: str | None, now: float) -> None:
        said = self._said.setdefault((name, cause), _Said())
        critical = reason is not None
        if critical == said.critical:
            return
        if said.when is not None and now - said.when < self.factory.config.get("alarms.interval"):
            return  # told within the interval: told later, if it still holds
        said.critical, said.when = critical, now
        self.post(self.message(name, cause, "critical" if critical else "recovered",
                               reason or "the cause is gone", now))

    # ------------------------------------------------------------ sending
    def message(self, name: str, cause: str, level: str, reason: str, now: float) -> EmailMessage:
        config = self.factory.config
        factory_id = config.factory_id
        what = "every queue" if name == FACTORY_WIDE else name
        mail = EmailMessage()
        mail["Subject"] = f"[APF {factory_id}] {what} {level}: {cause}"
        mail["From"] = config.get("alarms.sender") or f"autopyfactory@{socket.getfqdn()}"
        mail["To"] = config.get("factoryAdminEmail")
        mail["Date"] = email.utils.formatdate(now)
        mail.set_content(
            f"factory: {factory_id} on {socket.getfqdn()}\nqueue: {what}\nlevel: {level}\ncause: {cause}\n"
            f"reason: {reason}\ntime: {iso(now)}\n\n"
            f"At most one mail per queue and cause every {config.get('alarms.interval'):g} s "
            f"([Factory] alarms.interval).\n")
        return mail

    def post(self, mail: EmailMessage) -> None:
        """Hand the mail to the sender thread; never waits."""
        try:
            self.outbox.put_nowait(mail)
        except queues.Full:
            self.dropped += 1
            log.error("alarm not sent, %d mails already waiting for the SMTP server: %s", OUTBOX, mail["Subject"])
            return
        log.warning("alarm: %s", mail["Subject"])

    def _send_loop(self) -> None:
        while True:
            mail = self.outbox.get()
            if mail is None:
                return
            try:
                host, port = smtp_address(self.factory.config.get("factorySMTPServer"))
                with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT) as smtp:
                    smtp.send_message(mail)
                self.sent += 1
            except (OSError, ValueError, smtplib.SMTPException) as exc:
                self.failed += 1
                log.error("alarm mail to %s through [Factory] factorySMTPServer %s failed: %s: %s (%s)",
                          mail["To"], self.factory.config.get("factorySMTPServer"), type(exc).__name__, exc,
                          mail["Subject"])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._send_loop, name="alarms", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the mail being sent; mails still waiting are dropped (a daemon thread never holds up exit)."""
        waiting = []
        while True:
            try:
                waiting.append(self.outbox.get_nowait())
            except queues.Empty:
                break
        self.outbox.put_nowait(None)
        if waiting:
            log.warning("stopping: %d alarm mail(s) not sent", len(waiting))
        if self._thread is not None:
            self._thread.join(1.0)

    def __repr__(self) -> str:
        return "Alarms()"
