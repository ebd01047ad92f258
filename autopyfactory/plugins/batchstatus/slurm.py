"""Status of the pilots in a Slurm cluster: one squeue call for every queue.

The submit plugin tags each pilot with ``--comment apf:<factoryId>:<wmsqueue>:<queue>``
(each part percent-encoded, see ``pilot_tag``); this module reads that tag
back from squeue's output to attribute a pilot to a queue and a factory.

squeue is called as::

    squeue -h -r -t all -O JobID:|,ArrayJobID:|,ArrayTaskID:|,State:|,SubmitTime:|,StartTime:|,EndTime:|,exit_code:|,Reason:|,Comment:|

one line per job or array task, ten fields each ended by ``|`` (the comment,
free text for other users' jobs, comes last so a ``|`` inside it is harmless).
``-O`` rather than ``-o`` because only ``-O`` knows the exit code. A stand-in
squeue (benchmarks) prints exactly that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from autopyfactory import commands
from autopyfactory.config import Key
from autopyfactory.info import (
    EMPTY_EXIT,
    MAX_LISTED_PILOTS,
    BatchQueueInfo,
    FinishedPilot,
    LivePilot,
    killed_from_outside,
)
from autopyfactory.interfaces import BatchStatusPlugin
from autopyfactory.plugins.batchstatus._tally import (
    LIVE_STATES,
    Tally,
    monitored_queues,
    wms_queues,
)

log = logging.getLogger(__name__)

TAG_PREFIX = "apf:"
SQUEUE_FIELDS = ("JobID", "ArrayJobID", "ArrayTaskID", "State", "SubmitTime", "StartTime", "EndTime",
                 "exit_code", "Reason", "Comment")
SQUEUE_FORMAT = ",".join(f"{name}:|" for name in SQUEUE_FIELDS)
REMEMBER_FINISHED = 3600.0  # done/fault cover the last hour; squeue forgets after MinJobAge

# Slurm job state (squeue %T / State) -> pilot state. Source: squeue(1), section
# "JOB STATE CODES", Slurm 22.05; the table in docs/semantics.md.
SLURM_STATES: dict[str, str] = {
    "PENDING": "pending",
    "CONFIGURING": "pending",
    "REQUEUED": "pending",
    "REQUEUE_HOLD": "pending",
    "REQUEUE_FED": "pending",
    "RESV_DEL_HOLD": "pending",
    "RUNNING": "running",
    "COMPLETING": "running",
    "SUSPENDED": "running",
    "STOPPED": "running",
    "RESIZING": "running",
    "SIGNALING": "running",
    "STAGE_OUT": "running",
    "COMPLETED": "done",
    "FAILED": "fault",
    "TIMEOUT": "fault",
    "NODE_FAIL": "fault",
    "OUT_OF_MEMORY": "fault",
    "BOOT_FAIL": "fault",
    "DEADLINE": "fault",
    "PREEMPTED": "fault",
    "SPECIAL_EXIT": "fault",
    "CANCELLED": "removed",  # taken back by the factory before it started, or cancelled by an operator
    "REVOKED": "removed",  # federation: the job runs in a sibling cluster
}
HELD_STATES = frozenset({"REQUEUE_HOLD", "RESV_DEL_HOLD"})
HELD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin"})
# running pilots on their way out: counted as running and shown apart as "exiting"
EXITING_STATES = frozenset({"COMPLETING", "STAGE_OUT"})


def pilot_tag(factory: str, wmsqueue: str, queue: str) -> str:
    """The ``--comment`` that attributes a pilot: ``apf:<factory>:<wmsqueue>:<queue>``."""
    return TAG_PREFIX + ":".join(quote(part, safe="-_.~@+=/") for part in (factory, wmsqueue, queue))


def parse_tag(comment: str) -> tuple[str, str, str] | None:
    """(factory, wmsqueue, queue) of a pilot tag; None for anything else."""
    if not comment.startswith(TAG_PREFIX):
        return None
    parts = comment[len(TAG_PREFIX):].split(":")
    if len(parts) != 3:
        return None
    return unquote(parts[0]), unquote(parts[1]), unquote(parts[2])


MAX_LISTED_TASKS = 100_000  # a line naming more tasks than this is counted, never listed


def task_ranges(field: str) -> list[range] | None:
    """Tasks named by an ArrayTaskID field as ranges: ``5`` -> [range(5, 6)];
    ``[0-3,7%2]`` -> [range(0, 4), range(7, 8)]; N/A -> None. Ranges cost nothing
    however many tasks they name (``[0-4000000000]`` is one range)."""
    text = field.strip().strip("[]")
    if not text or text in ("N/A", "(null)"):
        return None
    text = text.split("%", 1)[0]
    ranges: list[range] = []
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if dash:
            step = 1
            if ":" in last:
                last, _, stride = last.partition(":")
                step = int(stride)
            if step < 1:
                raise ValueError(f"array task step {step} in {field[:100]!r}")
            ranges.append(range(int(first), int(last) + 1, step))
        else:
            ranges.append(range(int(first), int(first) + 1))
    return ranges


def task_count(field: str) -> int:
    """How many pilots an ArrayTaskID field names (N/A: one job), counted without listing them."""
    ranges = task_ranges(field)
    return 1 if ranges is None else sum(len(r) for r in ranges)


def task_ids(field: str) -> list[str] | None:
    """Tasks named by an ArrayTaskID field: ``5`` -> [5]; ``[0-3,7%2]`` -> [0..3, 7]; N/A -> None.

    Raises ValueError past MAX_LISTED_TASKS tasks (Slurm lists every task of a
    finished array apart: a huge listed range is not output we understand)."""
    ranges = task_ranges(field)
    if ranges is None:
        return None
    count = sum(len(r) for r in ranges)
    if count > MAX_LISTED_TASKS:
        raise ValueError(f"{count} array tasks on one line (at most {MAX_LISTED_TASKS:,} are listed)")
    return [str(task) for r in ranges for task in r]


class _Times:
    """Slurm timestamps (local time, ISO without zone) -> epoch seconds, cached:
    a 200-task array shares one submit time, so most lines are a dict hit."""

    def __init__(self) -> None:
        self._cache: dict[str, float | None] = {}

    def __call__(self, text: str) -> float | None:
        try:
            return self._cache[text]
        except KeyError:
            pass
        try:
            value: float | None = datetime.fromisoformat(text).timestamp()
        except ValueError:
            value = None  # N/A, NONE, Unknown
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[text] = value
        return value


class SqueueLine:
    """One parsed line of squeue: a job, an array task, or a collapsed range of pending tasks."""

    __slots__ = ("jobid", "array_job", "tasks", "state", "submit", "start", "end", "exitcode", "reason",
                 "factory", "wmsqueue", "queue")

    def __init__(self, fields: list[str], tag: tuple[str, str, str], times: _Times):
        self.jobid = fields[0]
        self.array_job = fields[1]
        self.tasks = task_ranges(fields[2])
        self.state = fields[3].split(" ", 1)[0]  # "CANCELLED by 0" -> CANCELLED
        self.submit = times(fields[4])
        self.start = times(fields[5])
        self.end = times(fields[6])
        self.exitcode = _exitcode(fields[7])
        self.reason = fields[8]
        self.factory, self.wmsqueue, self.queue = tag

    @property
    def ids(self) -> list[str]:
        """Slurm ids of the pilots on this line (``<arrayjob>_<task>`` or ``<job>``)."""
        if self.tasks is None:
            return [self.jobid]
        if self.count > MAX_LISTED_TASKS:
            raise ValueError(f"{self.count} array tasks on one line (at most {MAX_LISTED_TASKS:,} are listed)")
        return [f"{self.array_job}_{task}" for r in self.tasks for task in r]

    @property
    def count(self) -> int:
        return 1 if self.tasks is None else sum(len(r) for r in self.tasks)


def _exitcode(text: str) -> int | None:
    """squeue's exit_code is a wait status (768 = exit 3); ``3:0`` (sacct style) also accepted."""
    text = text.strip()
    if not text or text in ("N/A", "(null)"):
        return None
    try:
        if ":" in text:
            code, _, signal = text.partition(":")
            return int(code) if int(signal) == 0 else 128 + int(signal)
        status = int(text)
    except ValueError:
        return None
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


def _lines(output: str, chunk: int = 1 << 20) -> Iterator[str]:
    """The lines of ``output``, split a megabyte at a time: a list of all 200,000
    lines at once would be another 35 MB at the peak."""
    start, size = 0, len(output)
    while start < size:
        cut = output.find("\n", start + chunk)
        cut = size if cut < 0 else cut + 1
        yield from output[start:cut].splitlines()
        start = cut


def _tagged_lines(output: str | Iterable[str]) -> Iterator[tuple[int, list[str], tuple[str, str, str]]]:
    """(line number, fields, tag) of every line with an apf tag; a line without the fixed fields raises.

    ``output``: squeue's whole output, or its lines as they come (``commands.run(consume=...)``)."""
    tags: dict[str, tuple[str, str, str] | None] = {}
    nfields = len(SQUEUE_FIELDS)
    for number, line in enumerate(_lines(output) if isinstance(output, str) else output, 1):
        if not line:
            continue
        fields = line.split("|", nfields - 1)
        if len(fields) != nfields:
            raise ValueError(f"squeue output line {number} has {len(fields)} fields, expected {nfields}: "
                             f"{line[:200]!r}")
        comment = fields[-1]
        tag = tags.get(comment, False)
        if tag is False:
            text = comment[:-1] if comment.endswith("|") else comment
            tag = tags[comment] = parse_tag(text) if text.startswith(TAG_PREFIX) else None
        if tag is not None:
            yield number, fields, tag


def parse_squeue(output: str) -> Iterable[SqueueLine]:
    """The factory pilots in squeue output (lines without an apf tag are skipped).

    Linear and regex-free. A line that does not have the fixed fields raises
    ValueError: output we do not understand is unknown, never zero.
    """
    times = _Times()
    for number, fields, tag in _tagged_lines(output):
        try:
            yield SqueueLine(fields, tag, times)
        except ValueError as exc:
            raise ValueError(f"squeue output line {number}: {exc}: {'|'.join(fields)[:200]!r}") from None


def _task_count(field: str, number: int) -> int:
    """Pilots on a line from its ArrayTaskID field (``5``: 1, ``[0-3]``: 4, N/A: 1)."""
    if field.isdigit():
        return 1
    try:
        return task_count(field)
    except ValueError as exc:
        raise ValueError(f"squeue output line {number}: {exc}: ArrayTaskID {field[:100]!r}") from None


def pilot_state(line: SqueueLine) -> str:
    return slurm_pilot_state(line.state, line.exitcode)


def slurm_pilot_state(slurm_state: str, exitcode: int | None) -> str:
    """The pilot state of a Slurm job state (``unknown`` for one not in the table)."""
    state = SLURM_STATES.get(slurm_state)
    if state is None:
        return "unknown"
    if slurm_state == "CANCELLED":  # the factory never cancels a running pilot: an operator or the site did
        return "removed"
    if state == "fault" and killed_from_outside(exitcode):  # kill -9 on the node: not the pilot's failure
        return "removed"
    if slurm_state == "FAILED" and exitcode == EMPTY_EXIT:
        return "empty"  # the wrapper found no work (Slurm calls every exit but 0 FAILED)
    return state


def waiting_reason(reason: str) -> str:
    """Slurm's Reason of a pending job, "" when it gives none."""
    reason = reason.strip()
    return "" if reason in ("None", "(null)", "N/A") else reason


def live_pilot(line: SqueueLine, field: str) -> LivePilot | None:
    """A live pilot (or a range of pending array tasks) as an operator lists it; None for an ended one.
    ``field``: the line's ArrayTaskID as squeue printed it."""
    state = pilot_state(line)
    if state not in LIVE_STATES:
        return None
    if state == "pending" and (line.reason in HELD_REASONS or line.state in HELD_STATES):
        state = "held"
    elif line.state in EXITING_STATES:
        state = "exiting"
    if line.tasks is None:
        jobid = line.jobid
    elif line.count == 1:
        jobid = f"{line.array_job}_{line.tasks[0][0]}"
    else:
        jobid = f"{line.array_job}_[{field.strip().strip('[]')}]"
    return LivePilot(jobid, state, line.submit, line.start, waiting_reason(line.reason), line.count)


def squeue_env(options: dict[str, Any]) -> dict[str, str]:
    """Environment of our Slurm commands: the cluster's config, a time format we parse."""
    env = {"SLURM_TIME_FORMAT": "standard"}
    if options.get("slurmconf"):
        env["SLURM_CONF"] = options["slurmconf"]
    return env


class Slurm(BatchStatusPlugin):
    """Pilots per queue in one Slurm cluster, from one ``squeue`` call per interval.

    Keys (per queue, same for every queue of one cluster):
    ``batchstatus.slurm.squeue`` (``squeue``: command name or path, e.g. a stand-in),
    ``batchstatus.slurm.slurmconf`` (the cluster's slurm.conf; default: $SLURM_CONF / Slurm's own),
    ``batchstatus.slurm.timeout`` (60 s). Interval: ``[Factory] batchstatus.slurm.sleep``.

    Returns {queue: BatchQueueInfo} for every queue asked: pending (held
    included and shown apart), running (COMPLETING and STAGE_OUT included and
    shown apart as exiting), done and fault over the last hour
    (pilots squeue has forgotten are remembered here), ``finished`` pilots
    with start/end/exit code for Throttle, and ``peers``: other factories'
    pilots of the same WMS queue, {factoryId: {pending, running, submitted_last}}.
    A failed, timed out or unparsable squeue raises (status unknown).
    """

    name = "Slurm"
    keys = {
        "squeue": Key("str", "squeue", help="squeue command (name on PATH or path)"),
        "slurmconf": Key("path", "", help="slurm.conf of the cluster (sets SLURM_CONF)"),
        "timeout": Key("float", 60.0, min=1, help="seconds before squeue is given up"),
    }
    endpoint_keys = ("squeue", "slurmconf")
    name_keys = ("slurmconf",)
    default_sleep = 60.0
    default_maxage = 600.0
    runner: commands.Runner = staticmethod(commands.run)

    def __init__(self, options: dict[str, Any], context: Any):
        super().__init__(options, context)
        self.calls = 0
        self._finished: dict[str, dict[str, FinishedPilot]] = {}  # queue -> {pilot id: finished}
        self._warned: set[str] = set()

    def argv(self) -> list[str]:
        return [self.options["squeue"], "-h", "-r", "-t", "all", "-O", SQUEUE_FORMAT]

    def poll(self, queues: Collection[str]) -> dict[str, BatchQueueInfo]:
        self.calls += 1
        now = time.time()
        # the listing is read as squeue writes it: 200,000 lines are never held whole
        result = self.runner(self.argv(), timeout=self.options["timeout"], env=squeue_env(self.options),
                             consume=lambda lines: self.summarize(lines, queues, now))
        if not result.ok:
            raise RuntimeError(result.describe())
        return result.value

    def list_pilots(self, queue: str) -> list[LivePilot]:
        """The live pilots of ``queue`` from one squeue call (up to MAX_LISTED_PILOTS rows)."""
        result = self.runner(self.argv(), timeout=self.options["timeout"], env=squeue_env(self.options))
        if not result.ok:
            raise RuntimeError(result.describe())
        factory, times, pilots = self.context.factory_id, _Times(), []
        for number, fields, tag in _tagged_lines(result.stdout):
            if tag[0] != factory or tag[2] != queue:
                continue
            try:
                pilot = live_pilot(SqueueLine(fields, tag, times), fields[2])
            except ValueError as exc:
                raise ValueError(f"squeue output line {number}: {exc}: {'|'.join(fields)[:200]!r}") from None
            if pilot is not None:
                pilots.append(pilot)
                if len(pilots) >= MAX_LISTED_PILOTS:
                    break
        return pilots

    def summarize(self, output: str | Iterable[str], queues: Collection[str], now: float) -> dict[str, BatchQueueInfo]:
        """Counts per queue from squeue output, whole or line by line (see the module docstring for its format)."""
        factory = self.context.factory_id
        wanted = set(queues)
        tally = Tally(wms_queues(self.context, wanted), monitored_queues(self.context, wanted))
        named = tally.active  # queues whose running pilots are kept by id
        seen: dict[str, dict[str, FinishedPilot]] = {q: {} for q in wanted}
        times = _Times()
        for number, fields, tag in _tagged_lines(output):
            slurm_state = fields[3].split(" ", 1)[0]
            state = SLURM_STATES.get(slurm_state)
            if tag[0] == factory:
                if tag[2] not in wanted:
                    continue
            elif tag[1] not in tally.wms_wanted:
                continue
            if tag[0] == factory and state in LIVE_STATES:
                # most lines: this factory's pending and running pilots, only counted
                running = state == "running"
                # a running pilot by its Slurm id, for APFMon: <arrayjob>_<task>, or <job> outside an array
                jobid = (fields[1] + "_" + fields[2] if fields[2].isdigit() else fields[0]) \
                    if running and tag[2] in named else ""
                tally.mine(tag[2], state, _task_count(fields[2], number),
                           held=state == "pending" and (fields[8] in HELD_REASONS or slurm_state in HELD_STATES),
                           exiting=slurm_state in EXITING_STATES, reason=waiting_reason(fields[8]), jobid=jobid)
                if running:
                    tally.waited(tag[2], times(fields[4]), times(fields[5]), now, REMEMBER_FINISHED)
                continue
            if tag[0] == factory and state is not None and fields[2].isdigit():
                # a finished pilot seen in an earlier poll: an end does not change, nothing to parse again
                jobid = f"{fields[1]}_{fields[2]}"
                known = self._finished.get(tag[2])
                if known is not None and jobid in known:
                    continue
                # one seen for the first time (80,000 in the first poll at 2,000 queues): the few fields it needs
                start, end = times(fields[5]), times(fields[6])
                if end is not None:
                    exitcode = _exitcode(fields[7])
                    tally.waited(tag[2], times(fields[4]), start, now, REMEMBER_FINISHED)
                    seen[tag[2]][jobid] = FinishedPilot(jobid, start, end, exitcode,
                                                        slurm_pilot_state(slurm_state, exitcode), factory)
                continue
            try:
                line = SqueueLine(fields, tag, times)
            except ValueError as exc:
                raise ValueError(f"squeue output line {number}: {exc}: {'|'.join(fields)[:200]!r}") from None
            state = pilot_state(line)
            if state == "unknown":
                if line.state not in self._warned:
                    self._warned.add(line.state)
                    log.warning("Slurm state %r not in the state table; counted as pending", line.state)
                state = "pending"
            if line.factory == factory:
                if line.queue not in wanted:
                    continue
                if state in LIVE_STATES:
                    tally.mine(line.queue, state, line.count,
                               held=state == "pending" and (line.reason in HELD_REASONS or line.state in HELD_STATES),
                               exiting=line.state in EXITING_STATES, reason=waiting_reason(line.reason),
                               jobid=line.ids[0] if state == "running" and line.count == 1 else "")
                elif line.end is not None:
                    tally.waited(line.queue, line.submit, line.start, now, REMEMBER_FINISHED)
                    for jobid in line.ids:
                        seen[line.queue][jobid] = FinishedPilot(jobid, line.start, line.end, line.exitcode,
                                                                state, factory)
            elif line.wmsqueue in tally.wms_wanted and state in LIVE_STATES:
                tally.peer(line.wmsqueue, line.factory, state, line.count, line.submit)
        for queue in wanted:
            memory = self._finished.setdefault(queue, {})
            memory.update(seen[queue])
            for jobid in [j for j, p in memory.items() if now - p.end > REMEMBER_FINISHED]:
                del memory[jobid]
        return tally.answer({queue: self._finished[queue].values() for queue in wanted})

