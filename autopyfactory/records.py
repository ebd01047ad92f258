"""Records: one queue cycle (what it saw, what each scheduler step said, what it did); one admin action."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

from autopyfactory.timefmt import iso


@dataclass(slots=True)
class SchedStep:
    plugin: str
    n: int
    message: str


@dataclass(slots=True)  # a factory keeps 30 per queue: 60,000 at 2,000 queues
class CycleRecord:
    queue: str
    number: int
    started: float = field(default_factory=time.time)
    duration: float = 0.0
    wms: dict | None = None  # WMSQueueInfo as a dict; None = unknown
    batch: dict | None = None  # BatchQueueInfo as a dict; None = unknown
    batch_time: float | None = None  # when the batch status planned from was taken
    steps: list[SchedStep] = field(default_factory=list)
    decided: int = 0  # what the scheduler chain said
    submitted: int = 0
    removed: int = 0
    ids: list[str] = field(default_factory=list)
    submitted_at: float | None = None  # when the submit call returned
    holds: list[str] = field(default_factory=list)  # safety rules that lowered the number
    errors: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        """The queue's "last message": every step's message, then holds and errors."""
        parts = [step.message for step in self.steps if step.message]
        parts += self.holds + self.errors
        if self.submitted:
            parts.append(f"submitted {self.submitted}")
        if self.removed:
            parts.append(f"removed {self.removed} idle")
        return "; ".join(parts)

    @property
    def started_iso(self) -> str:
        return iso(self.started)

    @property
    def final(self) -> int:
        return self.submitted - self.removed

    def to_dict(self) -> dict:
        """Plain data for JSON (shares the record's lists and dicts: do not mutate it).

        Written by hand rather than with ``dataclasses.asdict``, whose deep copy was
        most of a cycle's CPU at 2,000 queues (docs/performance.md).
        """
        data = {f.name: getattr(self, f.name) for f in _FIELDS}
        data["steps"] = [{"plugin": s.plugin, "n": s.n, "message": s.message} for s in self.steps]
        data["message"] = self.message
        data["started_iso"] = self.started_iso
        return data


_FIELDS = fields(CycleRecord)


def share_unchanged(record: CycleRecord, previous: CycleRecord | None) -> None:
    """Make the parts of a finished ``record`` equal to the ``previous`` record's *be* the previous
    record's (its wms and batch numbers, its scheduler steps, its lists): an idle queue's
    records then cost little more than one. Records are not changed once their cycle ended."""
    if previous is None:
        return
    if record.wms == previous.wms:
        record.wms = previous.wms
    if record.batch == previous.batch:
        record.batch = previous.batch
    if record.steps == previous.steps:
        record.steps = previous.steps
    else:
        old = previous.steps
        record.steps = [old[i] if i < len(old) and step == old[i] else step for i, step in enumerate(record.steps)]
    for name in ("holds", "errors", "ids"):
        mine, theirs = getattr(record, name), getattr(previous, name)
        if mine == theirs:
            setattr(record, name, theirs)


@dataclass
class AdminAction:
    """One call of the admin API, refused or not: the audit trail's row."""

    time: float
    client: str  # the HTTP client's address; "system" for the factory's own (a pause ending at its --until)
    action: str  # reload, pause, drain, resume, loglevel, config, log, audit, stop
    target: str | None  # queue, log level or line count; None when the action has none
    result: str  # ok | refused | failed
    status: int  # HTTP status answered; 0 for the factory's own actions
    detail: str = ""  # why refused or failed, or what it did

    def to_dict(self) -> dict:
        return {"time": iso(self.time), "client": self.client,
                "action": self.action, "target": self.target, "result": self.result, "status": self.status,
                "detail": self.detail}
