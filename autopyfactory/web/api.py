"""The JSON API v1: what ``/api/v1/factory``, ``/api/v1/queues`` and ``/api/v1/queues/<name>`` answer.

Conventions, the same in every answer (docs/web.md shows each one):

- keys in snake_case;
- a point in time is an ISO 8601 UTC string (``2026-01-02T03:04:05Z``) or null;
- a duration is a number of seconds, its key ends in ``_seconds`` (``seconds_left`` too);
- an unknown number is null, never 0;
- an error is a JSON body ``{"error": "…"}`` whatever the status (4xx, 5xx).

Disabled queues (``enabled = False``, or ``enablequeues = False``) are listed
with health ``disabled`` and no numbers: they do not run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autopyfactory.health import factory_causes, idle_health, one_line
from autopyfactory.timefmt import iso

if TYPE_CHECKING:
    from autopyfactory.config import FactoryConfig, QueueConfig
    from autopyfactory.info import CredentialStatus
    from autopyfactory.queue import APFQueue
    from autopyfactory.records import CycleRecord

PROBLEM_CHARS = 300  # a reload problem: one line (the whole text is in the log)


def queue_view(queue: APFQueue, records: list[CycleRecord] | None = None, cycles: int | None = None) -> dict:
    """A running queue; with ``cycles``, its latest cycle records too (newest first)."""
    records = queue.recent_records() if records is None else records
    view = queue.summary(records)
    if cycles is not None:
        view["cycles"] = [cycle_view(r) for r in records[:cycles]]
    return view


def disabled_view(qconfig: QueueConfig, config: FactoryConfig, cycles: int | None = None) -> dict:
    """A queue of queues.conf that does not run (disabled, or critical when its section has errors):
    the same keys as a running one, no numbers."""
    health = idle_health(config, qconfig)
    view = {
        "name": qconfig.name, "enabled": False, "health": health.level, "health_reason": health.reason,
        "wmsqueue": qconfig.wmsqueue, "batchqueue": qconfig.batchqueue,
        "pending": None, "running": None, "exiting": None, "held": None, "done_1h": None, "fault_1h": None,
        "empty_1h": None,
        "wms": None, "paused": False, "pause": None, "fault_backoff": None,
        "cycle_count": 0, "submitted_total": 0, "errors_total": 0,
        "last_message": "", "last_cycle": None, "last_submission": None,
    }
    if cycles is not None:
        view["cycles"] = []
    return view


def cycle_view(record: CycleRecord) -> dict:
    """One cycle record: what it saw, each scheduler step, what it did."""
    return {
        "number": record.number,
        "started": iso(record.started),
        "duration_seconds": round(record.duration, 6),
        "wms": record.wms,
        "batch": record.batch,
        "batch_time": iso(record.batch_time),
        "steps": [{"plugin": s.plugin, "n": s.n, "message": s.message} for s in record.steps],
        "decided": record.decided,
        "submitted": record.submitted,
        "removed": record.removed,
        "ids": list(record.ids),
        "submitted_at": iso(record.submitted_at),
        "holds": list(record.holds),
        "errors": list(record.errors),
        "message": record.message,
    }


def credential_view(profile: str, state: CredentialStatus | None) -> dict:
    return {"profile": profile,
            "ok": bool(state and state.ok),
            "seconds_left": None if state is None else state.seconds_left,
            "message": "not checked yet" if state is None else state.message}


def endpoint_view(health: dict[str, Any]) -> dict:
    """A status endpoint (``StatusPoller.health()``) with ISO times and durations in seconds."""
    return {
        "kind": health["kind"],
        "plugin": health["plugin"],
        "endpoint": health["endpoint"],
        "queues": health["queues"],
        "healthy": health["healthy"],
        "breaker": health["breaker"],
        "breaker_until": iso(health["breaker_until"]),
        "breaker_opened": health["breaker_opened"],
        "calls": health["calls"],
        "consecutive_failures": health["consecutive_failures"],
        "failures_total": health["failures_total"],
        "last_error": health["last_error"],
        "last_error_time": iso(health["last_error_time"]),
        "last_success": iso(health["last_success"]),
        "last_attempt": iso(health["last_attempt"]),
        "in_call_since": iso(health["in_call_since"]),
        "last_duration_seconds": health["last_duration"],
        "age_seconds": health["age"],
        "sleep_seconds": health["sleep"],
        "maxage_seconds": health["maxage"],
    }


def reload_view(outcome: dict | None) -> dict | None:
    """The factory's last reload (``Factory.last_reload``): when, whether it was applied, why not."""
    if not outcome:
        return None
    return {"time": iso(outcome.get("time")), "ok": bool(outcome.get("ok")),
            "problems": [one_line(p, PROBLEM_CHARS) for p in outcome.get("problems", [])],
            "invalid": [one_line(p, PROBLEM_CHARS) for p in outcome.get("invalid", [])],
            **{key: list(outcome.get(key, [])) for key in ("added", "removed", "changed")}}


def factory_problems(factory: Any) -> list[str]:
    """What is wrong with the factory itself, not one queue (e.g. a store that cannot be written)."""
    return [reason for _, reason in factory_causes(factory)]
