"""Benchmark 1: submit throughput of the factory against raw Slurm, on the real test cluster.

Per repetition, in this order (the order of factory and baseline alternates
between repetitions, so a cluster that slows down as it fills up does not
favour either side):

- factory, one queue: a Factory with one queue whose WMS holds 2,000 work
  items submits 2,000 pilots in one cycle. Timed from the start of the cycle
  (``CycleRecord.started``) until sbatch returned with a job id (accepted by
  slurmctld; ``CycleRecord.submitted_at``).
- baseline: one ``sbatch --array=0-1999`` of the same launcher script.
- factory, 100 queues: a Factory with 100 queues of 20 work items each, each
  queue in its own thread as the factory runs; timed from the first cycle's
  start until the last sbatch returned.
- baseline: 100 back-to-back ``sbatch --array=0-19``.

The one-queue pair runs ``--inner`` times per repetition (an sbatch of
2,000 takes milliseconds, so it needs more samples). Every pilot is submitted held (``--hold`` on both sides: the benchmark
measures acceptance, 8,000 pilots per repetition must not run on the test
node) and cancelled afterwards. Reported: factory time / baseline time per
repetition, and the median.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autopyfactory.plugins.batchsubmit.slurm import launcher as shipped_launcher
from bench.common import (
    HOLD,
    cancel,
    emit,
    factory_id,
    held_on_slurm,
    job_ids,
    machine,
    median,
    running_factory,
    section,
    write_config,
)
from tests.waiting import wait_for

DEADLINE = 300.0
# Every array task counts against slurmctld's MaxJobCount (100,000 in the test cluster) until
# MinJobAge (300 s) after it was cancelled. The cluster is shared with everyone's tests:
# use at most half of it, and wait for old jobs to be purged when there is no room.
JOB_BUDGET = 50_000
ROOM_DEADLINE = 900.0


def work(spool: Path, wmsqueue: str, count: int) -> None:
    directory = spool / wmsqueue
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"item-{i}.json").write_text('{"command": ["true"]}')


def factory_round(root: Path, partition: str, slurmconf: str, queues: int, per_queue: int) -> dict:
    """One factory run: ``queues`` queues, ``per_queue`` pilots each, one cycle; returns timings and ids."""
    fid = factory_id("bench1")
    spool = root / "spool"
    text = ""
    for i in range(queues):
        name = f"B1Q{i:03d}"
        work(spool, name, per_queue)
        text += section(name, {
            "wmsstatusplugin": "Local",
            "wmsstatus.local.spooldir": spool,
            **held_on_slurm(slurmconf, partition),
            "batchsubmit.slurm.maxarray": max(per_queue, 1000),
            "schedplugin": "Ready",
            "apfqueue.sleep": 60,
            # the benchmark submits the whole batch in one cycle: the default ceilings (1,000 per cycle,
            # 100 pending) would cap it
            "apfqueue.maxpercycle": per_queue,
            "apfqueue.maxpending": per_queue,
        })
    conf = write_config(root, text, {
        "wmsstatus.local.sleep": 600, "batchstatus.slurm.sleep": 600, "batchstatus.slurm.maxage": 1200,
    }, fid)
    with running_factory(conf, cycles=1, log=root / "factory.log") as factory:
        wait_for(lambda: not any(q.alive for q in factory.queues.values()), "every queue's cycle", timeout=DEADLINE)
        records = [q.records[0] for q in factory.queues.values()]
    problems = [f"{r.queue}: {r.message}" for r in records if r.submitted != per_queue]
    ids = job_ids(pilot for r in records for pilot in r.ids)
    if problems:
        cancel(ids)
        raise RuntimeError(f"the factory did not submit {per_queue} pilots in every queue: {problems[:5]}")
    start = min(r.started for r in records)
    end = max(r.submitted_at for r in records)
    return {"seconds": end - start, "ids": ids, "sbatch_calls": len(ids)}


def baseline_round(root: Path, partition: str, arrays: int, size: int) -> dict:
    """``arrays`` back-to-back ``sbatch --array=0-(size-1)`` of the factory's launcher (the shipped file)."""
    logdir = root / "baseline"
    logdir.mkdir(parents=True, exist_ok=True)
    launcher = shipped_launcher()[0]
    argv = ["sbatch", "--parsable", HOLD, f"--array=0-{size - 1}", f"--partition={partition}",
            f"--output={logdir}/%A.%a.out", f"--error={logdir}/%A.%a.err", launcher]
    ids = []
    start = time.time()
    for _ in range(arrays):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if done.returncode != 0 or not done.stdout.strip().split(";")[0].isdigit():
            cancel(ids)
            raise RuntimeError(f"baseline sbatch failed: {done.stderr.strip()}")
        ids.append(done.stdout.strip().split(";")[0])
    return {"seconds": time.time() - start, "ids": ids}


def jobs_in_cluster() -> int:
    done = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i"], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    return len(done.stdout.split())


def wait_for_room(needed: int) -> None:
    """Until the cluster holds few enough jobs that ``needed`` more stay within JOB_BUDGET."""
    end = time.monotonic() + ROOM_DEADLINE
    while (present := jobs_in_cluster()) + needed > JOB_BUDGET:
        if time.monotonic() > end:
            raise RuntimeError(f"the cluster still holds {present} jobs; {needed} more would pass {JOB_BUDGET}")
        print(f"waiting for slurmctld to purge old jobs ({present} + {needed} > {JOB_BUDGET})", file=sys.stderr)
        time.sleep(15)


def run(reps: int, pilots: int, queues: int, inner: int) -> dict:
    from tests.slurmcluster import slurm_cluster

    per_queue = pilots // queues
    one_q, many_q = [], []
    with slurm_cluster() as cluster, tempfile.TemporaryDirectory(prefix="apf-bench1-") as tmp:
        os.chmod(tmp, 0o755)
        for rep in range(reps):
            wait_for_room(2 * pilots * (inner + 1))
            root = Path(tmp) / f"rep{rep}"
            steps = []
            for i in range(inner):  # one sbatch of 2,000 takes milliseconds: more samples of it
                pair = [
                    ("factory1", lambda r=root / f"one{i}": factory_round(r, cluster.partition, cluster.conf, 1,
                                                                            pilots)),
                    ("baseline1", lambda r=root / f"one{i}": baseline_round(r, cluster.partition, 1, pilots)),
                ]
                steps += pair if (rep + i) % 2 == 0 else pair[::-1]
            pair = [
                ("factoryN", lambda r=root: factory_round(r / "many", cluster.partition, cluster.conf, queues,
                                                          per_queue)),
                ("baselineN", lambda r=root: baseline_round(r, cluster.partition, queues, per_queue)),
            ]
            steps += pair if rep % 2 == 0 else pair[::-1]
            got: dict[str, list[float]] = {}
            for name, step in steps:
                result = step()
                cancel(result["ids"])
                got.setdefault(name, []).append(result["seconds"])
            one_q += list(zip(got["factory1"], got["baseline1"], strict=True))
            many_q += list(zip(got["factoryN"], got["baselineN"], strict=True))
            print(f"rep {rep + 1}/{reps}: 1 queue {median(got['factory1']):.4f}s vs {median(got['baseline1']):.4f}s; "
                  f"{queues} queues {many_q[-1][0]:.3f}s vs {many_q[-1][1]:.3f}s", file=sys.stderr)
            shutil.rmtree(root, ignore_errors=True)
    return {
        "benchmark": "submit",
        "machine": machine(),
        "reps": reps,
        "inner": inner,
        "pilots": pilots,
        "queues": queues,
        "one_queue": summary(one_q),
        "many_queues": summary(many_q),
        "target_ratio": 1.25,
    }


def summary(pairs: list[tuple[float, float]]) -> dict:
    ratios = [f / b for f, b in pairs]
    return {
        "factory_seconds": [round(f, 4) for f, _ in pairs],
        "baseline_seconds": [round(b, 4) for _, b in pairs],
        "ratios": [round(r, 3) for r in ratios],
        "median_ratio": round(median(ratios), 3),
        "median_factory_seconds": round(median([f for f, _ in pairs]), 4),
        "median_baseline_seconds": round(median([b for _, b in pairs]), 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--pilots", type=int, default=2000)
    p.add_argument("--queues", type=int, default=100)
    p.add_argument("--inner", type=int, default=2, help="one-queue pairs per repetition")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    emit(run(args.reps, args.pilots, args.queues, args.inner), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
