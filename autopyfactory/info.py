"""What status plugins report and what the scheduler chain reads.

WMS numbers are per WMS queue (``wmsqueue``), batch numbers per factory queue
(the section name in queues.conf). ``None`` wherever a number is expected
means *unknown*, which is never the same as zero.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class WMSQueueInfo:
    """Jobs waiting in the WMS for one WMS queue (PanDA job states mapped)."""

    notready: int = 0
    ready: int = 0  # activated: work a pilot could pick up now
    running: int = 0
    done: int = 0
    failed: int = 0
    status: str = "online"  # online | offline | test | brokeroff

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Signals someone outside the pilot sends to end it (an operator's kill, scancel, a batch system's removal),
# as exit codes 128 + signal: a pilot ended by one of these did not fail by itself (docs/semantics.md).
KILL_EXIT_CODES = frozenset(128 + s for s in (signal.SIGHUP, signal.SIGINT, signal.SIGKILL, signal.SIGTERM))


def killed_from_outside(exitcode: int | None) -> bool:
    """The pilot was ended by a signal from outside (exit code 128 + SIGHUP/SIGINT/SIGKILL/SIGTERM)."""
    return exitcode in KILL_EXIT_CODES


# The wrapper's exit code for a pilot that found no work (EX_TEMPFAIL: none now), e.g. a PanDA pilot the
# server had no job for (autopyfactory/wrappers/plugins/panda.py): such a pilot is "empty", counted apart
# from done and fault, whatever the batch system calls its end.
EMPTY_EXIT = 75


def ended_state(exitcode: int | None, signalled: bool = False) -> str:
    """done, empty or fault: how a pilot that ran ended, from its exit code (None: not known, done)."""
    if exitcode == EMPTY_EXIT and not signalled:
        return "empty"
    if signalled:
        return "fault"
    return "done" if exitcode in (0, None) else "fault"


@dataclass(frozen=True, slots=True)  # a factory remembers an hour of them: 80,000 at 2,000 queues
class FinishedPilot:
    """A pilot that has ended, as the batch system saw it."""

    jobid: str
    start: float | None  # epoch seconds; None if it never started
    end: float
    exitcode: int | None = None
    state: str = "done"  # done | empty | fault | removed (never started, or killed from outside)
    factory: str = ""

    @property
    def runtime(self) -> float | None:
        if self.start is None:
            return None
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class LivePilot:
    """A pilot in the batch system now, as an operator lists it (asked for when a page shows it)."""

    jobid: str
    state: str  # pending | held | running | exiting
    submitted: float | None
    start: float | None = None
    reason: str = ""  # why it waits or is held: Slurm's Reason, HTCondor's HoldReason
    count: int = 1  # pilots on this row: more than one for a range of pending array tasks (Slurm)


MAX_LISTED_PILOTS = 20_000  # rows a listing of one queue's live pilots holds at most (list_pilots)
MAX_REASONS = 20  # distinct reasons kept per queue; the rest are counted as OTHER_REASON
OTHER_REASON = "(other reasons)"


@dataclass(frozen=True)
class BatchQueueInfo:
    """Pilots of one factory queue in the batch system.

    ``pending`` includes ``held`` (shown apart as well). ``finished`` holds
    the pilots that ended recently (the batch system's own memory; the
    persistence store keeps more). ``queue_waits`` holds, for this queue's
    pilots that started in the last hour (still running or finished), the
    seconds each waited in the batch queue (start - submit time); empty when
    the batch system does not say. ``queue_wait_starts`` holds the start time
    (epoch seconds) of each of those pilots, in the same order, so that a
    scheduler can tell the waits of the last few minutes from the hour's;
    empty when the plugin does not say. ``reasons`` counts the pending pilots (held
    ones included) by why they wait, as the batch system says it (Slurm's
    Reason, HTCondor's HoldReason for held pilots). ``active`` names this
    queue's pilots running now by batch id: ``running``, or ``exiting`` for
    those on their way out (pending ones are left out; empty when the plugin
    does not say): what APFMon is told of each pilot (docs/monitoring.md).
    """

    pending: int = 0
    running: int = 0
    exiting: int = 0
    held: int = 0
    done: int = 0
    fault: int = 0
    empty: int = 0  # ended without finding work (EMPTY_EXIT): neither done nor fault
    finished: tuple[FinishedPilot, ...] = ()
    # pilots of other factories serving the same WMS queue: factory id -> counts
    peers: dict[str, dict[str, int]] = field(default_factory=dict)
    queue_waits: tuple[float, ...] = ()
    queue_wait_starts: tuple[float, ...] = ()
    reasons: dict[str, int] = field(default_factory=dict)
    active: dict[str, str] = field(default_factory=dict)  # batch id -> running | exiting

    def to_dict(self) -> dict:
        """The counts and peers (not ``finished``, the queue waits nor ``active``). Every cycle record holds one: no deep copy of
        the finished pilots only to drop them (that was 90 % of a cycle's CPU with 40 per queue)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("finished", "peers", "queue_waits", "queue_wait_starts", "reasons", "active")}
        data["peers"] = {name: dict(counts) for name, counts in self.peers.items()}
        data["reasons"] = dict(self.reasons)
        return data


@dataclass(frozen=True)
class CredentialStatus:
    """Health of one credential profile (auth.conf)."""

    profile: str
    ok: bool
    seconds_left: float | None = None
    message: str = ""
    path: str = ""


# ---------------------------------------------------------------- checking what plugins report

MAX_COUNT = 10_000_000  # no queue has more pilots or jobs than this: a larger count is garbage


def _bad_count(value) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT


def _bad_time(value) -> bool:
    return (not isinstance(value, int | float) or isinstance(value, bool)
            or not 0 <= value < 1e11)  # NaN fails both comparisons


def _counts(info, names: tuple[str, ...]) -> str:
    for name in names:
        value = getattr(info, name)
        if _bad_count(value):
            return f"{name} = {repr(value)[:40]}, not a whole number from 0 to {MAX_COUNT:,}"
    return ""


def check_wms(info) -> str:
    """Why a WMS status plugin's answer for one queue cannot be used ("" when it can)."""
    if not isinstance(info, WMSQueueInfo):
        return f"status is {type(info).__name__}, not WMSQueueInfo"
    if not isinstance(info.status, str):
        return f"status = {repr(info.status)[:40]}, not a string"
    return _counts(info, ("notready", "ready", "running", "done", "failed"))


def check_batch(info) -> str:
    """Why a batch status plugin's answer for one queue cannot be used ("" when it can)."""
    if not isinstance(info, BatchQueueInfo):
        return f"status is {type(info).__name__}, not BatchQueueInfo"
    why = _counts(info, ("pending", "running", "exiting", "held", "done", "fault"))
    if why:
        return why
    if not isinstance(info.finished, tuple | list) or not all(
            isinstance(p, FinishedPilot) and not _bad_time(p.end) for p in info.finished):
        return "finished is not a list of FinishedPilot with an end time"
    if not isinstance(info.queue_waits, tuple | list) or any(_bad_time(w) for w in info.queue_waits):
        return "queue_waits is not a list of seconds"
    if not isinstance(info.queue_wait_starts, tuple | list) or any(_bad_time(t) for t in info.queue_wait_starts):
        return "queue_wait_starts is not a list of times"
    if info.queue_wait_starts and len(info.queue_wait_starts) != len(info.queue_waits):
        return (f"queue_wait_starts has {len(info.queue_wait_starts)} start times for {len(info.queue_waits)}"
                " queue waits (one each, or none)")
    if not isinstance(info.peers, dict):
        return f"peers is {type(info.peers).__name__}, not a dict"
    if not isinstance(info.reasons, dict) or len(info.reasons) > MAX_REASONS + 1 or any(
            not isinstance(reason, str) or _bad_count(count) for reason, count in info.reasons.items()):
        return f"reasons is not {{reason: count}} with at most {MAX_REASONS + 1} reasons"
    if not isinstance(info.active, dict) or any(
            not isinstance(jobid, str) or state not in ("running", "exiting") for jobid, state in info.active.items()):
        return "active is not {batch id: running | exiting}"
    for factory, counts in info.peers.items():
        if (not isinstance(factory, str) or not isinstance(counts, dict)
                or any(_bad_count(counts.get(k, 0)) for k in ("pending", "running"))
                or _bad_time(counts.get("submitted_last", 0))):
            return f"peers entry {repr(factory)[:40]} is not {{pending, running, submitted_last}}"
    return ""
