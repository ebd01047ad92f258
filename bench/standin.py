"""Stand-ins for benchmark 2: a recorded-format squeue listing of any size, and a PanDA answer.

The listing has exactly the format the Slurm batch status plugin reads
(``squeue -h -r -t all -O JobID:|,ArrayJobID:|,...,Comment:|``, see
autopyfactory/plugins/batchstatus/slurm.py; lines like the ones recorded from
the test cluster). Every queue holds the same mix per 100 pilots, in job
arrays of 20 tasks: 30 completed and 10 failed within the last hour, 40
running, 20 pending. The stand-in ``squeue`` is a shell script that logs its
call and ``cat``s the listing, so its own cost is next to nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ARRAY = 20
# per block of 100 pilots: (state, exit code, reason)
MIX = [("COMPLETED", "0", "None")] * 30 + [("FAILED", "256", "NonZeroExitCode")] * 10 \
    + [("RUNNING", "0", "None")] * 40 + [("PENDING", "0", "Priority")] * 20


def site(i: int) -> str:
    return f"BENCH_SITE_{i:04d}"


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))


def squeue_listing(factory: str, sites: int, pilots: int, now: float | None = None) -> str:
    """``pilots`` lines spread evenly over ``sites`` queues (queue = WMS queue = site name)."""
    now = time.time() if now is None else now
    per_site = max(1, pilots // sites)
    lines = []
    jobid = 100_000
    for s in range(sites):
        name = site(s)
        tag = f"apf:{factory}:{name}:{name}"
        for first in range(0, per_site, ARRAY):
            array = jobid
            submit = _stamp(now - 1800 - (first % 100) * 5)
            for task in range(first, min(first + ARRAY, per_site)):
                state, code, reason = MIX[task % len(MIX)]
                if state == "PENDING":
                    start, end = "N/A", "N/A"
                elif state == "RUNNING":
                    start, end = _stamp(now - 600), "N/A"
                else:
                    start, end = _stamp(now - 1200), _stamp(now - 600 + task)
                lines.append(f"{jobid}|{array}|{task - first}|{state}|{submit}|{start}|{end}|{code}|{reason}|{tag}|")
                jobid += 1
    return "\n".join(lines) + "\n"


def panda_statistics(sites: int) -> dict:
    """A job statistics answer for ``sites`` sites, each with less work than pilots pending (Ready says 0)."""
    data = {site(s): {"activated": 15, "assigned": 3, "defined": 2, "starting": 1, "running": 40,
                      "holding": 2, "transferring": 1, "finished": 120, "failed": 4, "cancelled": 1}
            for s in range(sites)}
    return {"success": True, "message": "", "data": data}


def squeue_command(directory: Path, listing: Path) -> tuple[Path, Path]:
    """An executable ``squeue`` in ``directory`` printing ``listing``; returns (script, call log)."""
    directory.mkdir(parents=True, exist_ok=True)
    calls = directory / "squeue.calls"
    calls.write_text("")
    script = directory / "squeue"
    script.write_text(
        "#!/bin/sh\n"
        "# stand-in squeue (bench/standin.py): logs the call, prints a recorded-format listing\n"
        f'printf "%s\\n" "$*" >> "{calls}"\n'
        f'exec cat "{listing}"\n'
    )
    script.chmod(0o755)
    return script, calls


def count_calls(calls: Path) -> int:
    try:
        return sum(1 for line in calls.read_text().splitlines() if line)
    except OSError:
        return 0


def on_path(directory: Path) -> None:
    os.environ["PATH"] = f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"
