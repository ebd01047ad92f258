"""Workloads for ``apf replay``: trace files (SWF, CSV) and a seeded bursty generator.

A workload is a list of ``Job(submit, runtime, cores)`` in seconds, sorted by
submit time, starting at the first submission (time 0).

A trace is read as a stream (plain or gzip), so its size on disk or once
uncompressed never decides the memory used: the reader stops with a
``TraceError`` at the first of ``LIMITS``' bounds a trace passes, naming the
file, the line and the bound. Every time must be a finite number.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import random
import zlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Job:
    submit: float
    runtime: float
    cores: int = 1  # processors the record asks for (SWF field 5; 1 when unknown or in CSV)


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file and line."""


# The bounds of a trace (docs/provisioning.md, "Input limits"). A year of work at one job a
# minute is 525,600 jobs; the shipped traces have 18,239 and 10,000 over about 90 days.
MAX_JOBS = 1_000_000  # records kept (``apf replay --max-jobs``)
MAX_BYTES = 512 * 2**20  # bytes read once uncompressed: a gzip bomb stops here
MAX_LINE = 64 * 1024  # characters of one line
SPARE_LINES = 100_000  # lines beyond two per job allowed (comments, blank lines): a bomb of newlines stops here
MAX_SPAN = 400 * 86400.0  # seconds from the first to the last submission
MAX_RUNTIME = 30 * 86400.0  # seconds of one job's run time

SHIPPED = {
    "nasa-ipsc": "NASA-iPSC-1993-3.1-cln.swf.gz",
    "lublin-256": "lublin_256.swf.gz",
}


def shipped_path(name: str) -> str:
    """Path of a trace shipped in autopyfactory/replay/traces/ (by its short name or file name)."""
    filename = SHIPPED.get(name, name)
    return str(resources.files("autopyfactory.replay").joinpath("traces", filename))


class _Capped(io.RawIOBase):
    """A binary stream that refuses to give more than ``limit`` bytes (what a gzip member inflates to)."""

    def __init__(self, stream, limit: int, path: str):
        self.stream, self.left, self.path, self.limit = stream, limit, path, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(min(len(buffer), self.left + 1))
        if len(data) > self.left:
            raise TraceError(f"{self.path}: more than {self.limit // 2**20} MiB of text "
                             f"(uncompressed); a trace is at most that large")
        self.left -= len(data)
        buffer[:len(data)] = data
        return len(data)


def _lines(path: str, max_lines: int):
    """(line number, text) of a trace, read as a stream within MAX_BYTES, MAX_LINE and ``max_lines``."""
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with raw:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw
        text = io.TextIOWrapper(io.BufferedReader(_Capped(stream, MAX_BYTES, path)), encoding="utf-8",
                                errors="replace", newline=None)
        number = 0
        try:
            while True:
                line = text.readline(MAX_LINE + 1)
                if not line:
                    return
                number += 1
                if number > max_lines:
                    raise TraceError(f"{path}: more than {max_lines:,} lines (two a job, at most, and "
                                     f"{SPARE_LINES:,} more)")
                if len(line) > MAX_LINE and not line.endswith("\n"):
                    raise TraceError(f"{path}: line {number}: longer than {MAX_LINE} characters")
                yield number, line
        except (OSError, EOFError, zlib.error) as exc:
            raise TraceError(f"{path}: not a readable {'gzip ' if path.endswith('.gz') else ''}file: {exc}") from None


def read_trace(path: str, max_jobs: int = MAX_JOBS) -> list[Job]:
    """Jobs of an SWF (``;`` comments, field 2 submit, field 4 run time, field 5 processors) or CSV
    (``submit,runtime``) file.

    ``.gz`` files are read compressed. Records with an unknown (negative)
    submit or run time are skipped; times are shifted so that the first job
    arrives at 0. More than ``max_jobs`` records, a time that is not a finite
    number, a run time above MAX_RUNTIME or a span above MAX_SPAN is an error.
    """
    if not os.path.exists(path) and os.path.exists(shipped_path(path)):
        path = shipped_path(path)
    stem = path[:-3] if path.endswith(".gz") else path
    lines = _lines(path, 2 * max_jobs + SPARE_LINES)
    if stem.lower().endswith(".csv"):
        records = _csv_records(lines)
        jobs = _jobs(records, (0, 1, None), path, "expected 'submit,runtime' in seconds, got {!r}", max_jobs)
    else:
        records = ((number, line.split(), line) for number, line in _stripped(lines) if not line.startswith(";"))
        jobs = _jobs(records, (1, 3, 4), path, "not an SWF record (expected at least 4 numeric fields, got {!r})",
                     max_jobs)
    if not jobs:
        raise TraceError(f"{path}: no jobs with a known submit and run time")
    jobs.sort(key=lambda job: job.submit)
    start = jobs[0].submit
    if jobs[-1].submit - start > MAX_SPAN:
        raise TraceError(f"{path}: submissions span {(jobs[-1].submit - start) / 86400:.0f} days; "
                         f"a trace spans at most {MAX_SPAN / 86400:.0f} days")
    if start:
        for i, job in enumerate(jobs):  # in place: one copy of the jobs at a time
            jobs[i] = Job(job.submit - start, job.runtime, job.cores)
    return jobs


def _stripped(lines):
    for number, line in lines:
        line = line.strip()
        if line:
            yield number, line


def _csv_records(lines):
    for number, line in _stripped(lines):
        row = next(csv.reader([line]), [])
        if not row or row[0].strip().startswith("#") or (number == 1 and row[0].strip().lower() == "submit"):
            continue  # a comment, or the header
        yield number, row, line


def _jobs(records, columns: tuple[int, int, int | None], path: str, complaint: str, max_jobs: int) -> list[Job]:
    """Jobs of ``(line number, fields, line)`` records: submit, run time and processors in ``columns``.

    A record without two numbers there is an error: ``complaint`` formatted with the line says why.
    """
    jobs = []
    submit_at, runtime_at, cores_at = columns
    for number, fields, line in records:
        try:
            submit, runtime = float(fields[submit_at]), float(fields[runtime_at])
        except (IndexError, ValueError):
            raise TraceError(f"{path}: line {number}: {complaint.format(line.strip()[:80])}") from None
        for what, value, column in (("submit time", submit, submit_at), ("run time", runtime, runtime_at)):
            if not math.isfinite(value):
                raise TraceError(f"{path}: line {number}: {what} {fields[column]!r} is not a finite number")
        if submit < 0 or runtime < 0:
            continue  # unknown
        if runtime > MAX_RUNTIME:
            raise TraceError(f"{path}: line {number}: run time {runtime:g} s is above the limit "
                             f"{MAX_RUNTIME:g} s ({MAX_RUNTIME / 86400:g} days)")
        if len(jobs) >= max_jobs:
            raise TraceError(f"{path}: line {number}: more than {max_jobs} jobs (the limit; --max-jobs raises it)")
        cores = 1
        if cores_at is not None and len(fields) > cores_at:
            try:
                cores = max(1, min(int(float(fields[cores_at])), 1_000_000))
            except (ValueError, OverflowError):
                cores = 1
        jobs.append(Job(submit, runtime, cores))
    return jobs


def bursty(seed: int, hours: float = 24.0, background_per_hour: float = 20.0, burst_size: int = 200,
           idle_gap: float = 3600.0, mean_runtime: float = 1800.0) -> list[Job]:
    """A seeded workload: Poisson background plus bursts.

    Background jobs arrive as a Poisson process at ``background_per_hour``;
    every ``idle_gap`` seconds of quiet a burst of ``burst_size`` jobs arrives
    within one minute. Run times are exponential with mean ``mean_runtime``.
    """
    rng = random.Random(seed)
    end = hours * 3600.0
    jobs = []
    t = 0.0
    while background_per_hour > 0:
        t += rng.expovariate(background_per_hour / 3600.0)
        if t >= end:
            break
        jobs.append(Job(t, rng.expovariate(1.0 / mean_runtime)))
    burst = idle_gap
    while burst < end:
        jobs.extend(Job(burst + rng.uniform(0, 60), rng.expovariate(1.0 / mean_runtime)) for _ in range(burst_size))
        burst += idle_gap
    jobs.sort(key=lambda job: job.submit)
    return jobs
