"""Workloads for ``apf replay``: trace files (SWF, CSV) and a seeded bursty generator.

A workload is a list of ``Job(submit, runtime)`` in seconds, sorted by submit
time, starting at the first submission (time 0).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import random
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Job:
    submit: float
    runtime: float


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file and line."""


SHIPPED = {
    "nasa-ipsc": "NASA-iPSC-1993-3.1-cln.swf.gz",
    "lublin-256": "lublin_256.swf.gz",
}


def shipped_path(name: str) -> str:
    """Path of a trace shipped in autopyfactory/replay/traces/ (by its short name or file name)."""
    filename = SHIPPED.get(name, name)
    return str(resources.files("autopyfactory.replay").joinpath("traces", filename))


def read_trace(path: str) -> list[Job]:
    """Jobs of an SWF (``;`` comments, field 2 submit, field 4 run time) or CSV (``submit,runtime``) file.

    ``.gz`` files are read compressed. Records with an unknown (-1) submit or
    run time are skipped; times are shifted so that the first job arrives at 0.
    """
    if not os.path.exists(path) and os.path.exists(shipped_path(path)):
        path = shipped_path(path)
    try:
        with open(path, "rb") as raw:
            data = raw.read()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except OSError as exc:
            raise TraceError(f"{path}: not a gzip file: {exc}") from None
    text = data.decode("utf-8", errors="replace")
    stem = path[:-3] if path.endswith(".gz") else path
    jobs = _read_csv(text, path) if stem.lower().endswith(".csv") else _read_swf(text, path)
    if not jobs:
        raise TraceError(f"{path}: no jobs with a known submit and run time")
    jobs.sort(key=lambda job: job.submit)
    start = jobs[0].submit
    return [Job(job.submit - start, job.runtime) for job in jobs]


def _read_swf(text: str, path: str) -> list[Job]:
    records = ((number, line.split(), line) for number, line in enumerate(map(str.strip, text.splitlines()), 1)
               if line and not line.startswith(";"))
    return _jobs(records, (1, 3), path, "not an SWF record (expected at least 4 numeric fields, got {!r})")


def _read_csv(text: str, path: str) -> list[Job]:
    records = ((number, row, ",".join(row)) for number, row in enumerate(csv.reader(io.StringIO(text)), 1)
               if row and not row[0].strip().startswith("#")
               and not (number == 1 and row[0].strip().lower() == "submit"))  # a header
    return _jobs(records, (0, 1), path, "expected 'submit,runtime' in seconds, got {!r}")


def _jobs(records, columns: tuple[int, int], path: str, complaint: str) -> list[Job]:
    """Jobs of ``(line number, fields, line)`` records, submit and run time in ``columns``; unknown (< 0) skipped.

    A record without two numbers there is an error: ``complaint`` formatted with the line says why.
    """
    jobs = []
    for number, fields, line in records:
        try:
            submit, runtime = (float(fields[column]) for column in columns)
        except (IndexError, ValueError):
            raise TraceError(f"{path}: line {number}: {complaint.format(line[:80])}") from None
        if submit >= 0 and runtime >= 0:
            jobs.append(Job(submit, runtime))
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
