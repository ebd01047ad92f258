"""A queue's health: one definition for the status page, the API, metrics, alarms and `apf status`.

Levels, worst first for sorting::

    critical   the queue cannot do its job: status unknown, credentials not
               usable, the last cycle failed or its submission errored, fault
               backoff active, the queue thread is not running, its section
               of queues.conf has errors (``invalid_health``: not started)
    warning    it works, but an operator should look: pilots faulted in the
               last hour, a credential expiring soon, a cycle overdue
    paused     an operator stopped submission (``apf pause``)
    drained    an operator stopped submission and removed idle pilots (``apf drain``)
    ok         none of the above
    disabled   ``enabled = False`` in queues.conf: the queue does not run

Every level comes with ``reason``: one short line saying why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from autopyfactory.redact import redact
from autopyfactory.timefmt import iso

LEVELS = ("critical", "warning", "paused", "drained", "ok", "disabled")  # worst first
EXPIRY_WARNING = 6 * 3600.0  # a credential with less time left than this is a warning
OVERDUE_CYCLES = 3  # a cycle later than this many apfqueue.sleep is a warning
REASON_LENGTH = 160
FACTORY_COUNT_UNKNOWN = "MaxPerFactory: factory-wide pilot count unknown"  # the hold of a queue held back by it


@dataclass(frozen=True)
class Health:
    level: str
    reason: str

    @property
    def rank(self) -> int:
        """Position for sorting, worst first."""
        return LEVELS.index(self.level)


class QueueView(Protocol):
    """What health reads of a queue (autopyfactory.queue.APFQueue has it all)."""

    pause: Any  # queue.Pause or None
    fault_backoff: str | None
    started: bool
    alive: bool
    stopping: bool
    ran_its_cycles: bool
    died: str | None  # why the queue thread died, until it is restarted
    last_record: Any  # records.CycleRecord or None
    sleep: float
    submitter: Any  # has credential_profile
    context: Any  # has credentials
    config_error: str | None  # a reload found its new section invalid: it runs its previous one

    def finished_counts(self, since: float) -> dict[str, int] | None: ...


DISABLED = Health("disabled", "enabled = False in queues.conf")
QUEUES_OFF = Health("disabled", "enablequeues = False in factory.conf")


def idle_health(config, qconfig) -> Health:
    """The health of a queue of queues.conf that does not run: invalid (critical), else disabled."""
    reason = config.invalid_reason(qconfig.name)
    if not config.get("enablequeues"):
        return QUEUES_OFF
    if reason and qconfig.enabled:
        return Health("critical", one_line(reason))
    return DISABLED


def one_line(text: str, limit: int = REASON_LENGTH) -> str:
    """The first line of ``text``, redacted, then cut to ``limit`` characters (never half a secret)."""
    line = " ".join(redact(str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def queue_health(queue: QueueView, now: float | None = None) -> Health:
    """The health of a running queue (see the module docstring for the levels)."""
    now = time.time() if now is None else now
    pause = queue.pause
    if pause is not None:
        until = f" until {iso(pause.until)}" if pause.until else ""
        return Health(pause.mode, one_line(f"{pause.mode} by the operator{until}"
                                           + (f": {pause.reason}" if pause.reason else "")))
    critical = _critical(queue)
    if critical:
        return Health("critical", one_line(critical))
    warning = _warning(queue, now)
    if warning:
        return Health("warning", one_line(warning))
    return Health("ok", "submitting as needed" if queue.last_record else "waiting for the first cycle")


def _critical(queue: QueueView) -> str:
    causes = critical_causes(queue)
    return causes[0][1] if causes else ""


def critical_causes(queue: QueueView) -> list[tuple[str, str]]:
    """Every (cause, reason) that makes the queue critical now, the one health shows first.

    The causes are the alarms' names for them (autopyfactory.alarms): ``queue thread``,
    ``fault backoff``, ``credential``, ``status unknown``, ``cycle error``, ``submission failed``;
    and ``factory count unknown`` (held back by MaxPerFactory), which mails nothing itself;
    ``configuration`` for a queue a reload found invalid, which runs its previous section.
    """
    config_error = getattr(queue, "config_error", None)  # (views built for tests may not have it)
    causes = [("configuration", config_error)] if config_error else []
    if queue.started and not queue.alive and not queue.stopping and not queue.ran_its_cycles:
        why = f"queue thread died ({queue.died}); restarting it" if queue.died else "queue thread is not running"
        return [*causes, ("queue thread", why)]
    if queue.fault_backoff:
        causes.append(("fault backoff", queue.fault_backoff))
    credential = _credential(queue)
    if credential is not None and not credential.ok:
        causes.append(("credential",
                       f"credential {credential.profile} not usable: {credential.message or 'not checked yet'}"))
    record = queue.last_record
    if record is None:
        return causes
    if record.wms is None:
        causes.append(("status unknown", _hold(record, "WMS status unknown")))
    elif record.batch is None:
        causes.append(("status unknown", _hold(record, "batch status unknown")))
    elif record.errors:
        error = record.errors[-1]
        causes.append(("cycle error" if error.startswith("error: ") else "submission failed", error))
    else:
        held = _hold(record, FACTORY_COUNT_UNKNOWN)
        if held != FACTORY_COUNT_UNKNOWN:  # held back because another queue's status is unknown too long
            causes.append(("factory count unknown", held))  # no alarm of its own: the unknown queue has one
    return causes


def _warning(queue: QueueView, now: float) -> str:
    credential = _credential(queue)
    if credential is not None and credential.seconds_left is not None and credential.seconds_left < EXPIRY_WARNING:
        return f"credential {credential.profile} expires in {credential.seconds_left / 3600:.1f} h"
    record = queue.last_record
    if record is not None and now - record.started > OVERDUE_CYCLES * queue.sleep + record.duration:
        return f"last cycle {now - record.started:.0f} s ago (apfqueue.sleep = {queue.sleep:g})"
    finished = queue.finished_counts(now - 3600) if record is not None else None
    if finished and finished.get("fault"):
        ended = finished["fault"] + finished.get("done", 0)
        return f"{finished['fault']} of {ended} pilots that ended in the last hour faulted"
    return ""


def _hold(record, prefix: str) -> str:
    """The hold message that starts with ``prefix`` (it carries the reason), or the prefix alone."""
    return next((hold for hold in record.holds if hold.startswith(prefix)), prefix)


def _credential(queue: QueueView):
    profile = queue.submitter.credential_profile
    credentials = queue.context.credentials
    if not profile or credentials is None:
        return None
    status = credentials.status(profile)
    if status is None:
        return _Unchecked(profile)
    return status


@dataclass(frozen=True)
class _Unchecked:
    profile: str
    ok: bool = False
    seconds_left: float | None = None
    message: str = "not checked yet"


def factory_causes(factory: Any) -> list[tuple[str, str]]:
    """What is wrong with the factory itself, not one queue, as (cause, reason): a store that cannot be
    written (``store``), queues configured from a stale copy because their source is down (``queue source``)."""
    store = getattr(factory, "store", None)
    problem = store.problem if store is not None else None
    stale = getattr(getattr(factory, "config", None), "stale", None) or []  # remote queueConf from its cache
    return ([("store", problem)] if problem else []) + [("queue source", reason) for reason in stale]
