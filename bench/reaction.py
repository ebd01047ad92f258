"""Benchmark 4: reaction time, from work appearing in PanDA to the first pilot pending in Slurm.

A factory with ``apfqueue.sleep`` = 30 s runs K queues on one PanDA endpoint
(tests/panda_double.py on 127.0.0.1) and the real Slurm test cluster. Once
every queue has cycled with nothing to do, work appears for queue i (one
activated job at its PanDA site) at a moment spread evenly over one status
interval + one cycle interval, so the arrivals fall at every phase of the
status poll and of the queue's cycle. Measured per queue: from the arrival
until sbatch returned the first pilot's job id (accepted by slurmctld, so
pending; checked with squeue). Target: at most one status interval + one
cycle interval. Pilots are submitted held and cancelled afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
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


def run(queues: int, sleep: float, status_sleep: float) -> dict:
    from tests.panda_double import PandaDouble
    from tests.slurmcluster import slurm_cluster

    fid = factory_id("bench4")
    sites = [f"REACT_{fid}_{i}" for i in range(queues)]
    double = PandaDouble()
    double.stats = {"success": True, "message": "", "data": {s: {"activated": 0, "running": 0} for s in sites}}
    double.up()
    target = status_sleep + sleep
    with slurm_cluster() as cluster, tempfile.TemporaryDirectory(prefix="apf-bench4-") as tmp:
        os.chmod(tmp, 0o755)
        root = Path(tmp)
        text = ""
        for name in sites:
            text += section(name, {
                "wmsstatusplugin": "Panda",
                "wmsstatus.panda.url": double.url,
                **held_on_slurm(cluster.conf, cluster.partition),
                "schedplugin": "Ready, MaxPerCycle",
                "sched.maxpercycle.maximum": 10,
                "apfqueue.sleep": sleep,
            })
        conf = write_config(root, text, {
            "wmsstatus.panda.sleep": status_sleep, "wmsstatus.panda.maxage": 10 * status_sleep,
            "batchstatus.slurm.sleep": status_sleep, "batchstatus.slurm.maxage": 10 * status_sleep,
        }, fid)
        arrivals: dict[str, float] = {}
        with contextlib.closing(double), running_factory(conf, log=root / "factory.log", stop_timeout=60) as factory:
            wait_for(lambda: all(q.cycles >= 1 for q in factory.queues.values()), "every queue's first cycle",
                     timeout=3 * target)
            quiet = [q.name for q in factory.queues.values() if q.records[0].wms is None or q.submitted_total]
            if quiet:
                raise RuntimeError(f"queues not idle with known status before the work arrived: {quiet}")
            offset = random.uniform(0, target / queues)
            start = time.time()
            order = random.sample(sites, len(sites))
            for i, name in enumerate(order):
                when = start + offset + i * target / queues
                time.sleep(max(0.0, when - time.time()))
                double.set_site(name, activated=1, running=0)
                arrivals[name] = time.time()

            def submitted() -> bool:
                return all(q.submitted_total > 0 for q in factory.queues.values())

            wait_for(submitted, "a pilot from every queue", timeout=3 * target, every=0.2)
            first = {}
            for q in factory.queues.values():
                record = next(r for r in reversed(q.records) if r.submitted)
                first[q.name] = (record.submitted_at, record.ids)
        ids = job_ids(pilot for _, pilot_ids in first.values() for pilot in pilot_ids)
        states = squeue_states(ids)
        cancel(ids)
    reactions = {name: first[name][0] - arrivals[name] for name in sites}
    pending = {name: states.get(first[name][1][0].split("_")[0], "?") for name in sites}
    return {
        "benchmark": "reaction",
        "machine": machine(),
        "queues": queues,
        "apfqueue_sleep": sleep,
        "status_sleep": status_sleep,
        "target_seconds": target,
        "reaction_seconds": {k: round(v, 2) for k, v in sorted(reactions.items())},
        "median_seconds": round(median(list(reactions.values())), 2),
        "max_seconds": round(max(reactions.values()), 2),
        "first_pilot_state": pending,
    }


def squeue_states(ids: list[str]) -> dict[str, str]:
    """State of each job (array) as squeue shows it right after the measurement."""
    if not ids:
        return {}
    done = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%F|%T|%r"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    states: dict[str, str] = {}
    for line in done.stdout.splitlines():
        job, state, reason = (line.split("|") + ["", ""])[:3]
        states.setdefault(job, f"{state} ({reason})" if reason else state)
    return states


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queues", type=int, default=6, help="queues, each one arrival")
    p.add_argument("--sleep", type=float, default=30.0, help="apfqueue.sleep (seconds)")
    p.add_argument("--status-sleep", type=float, default=30.0, help="wmsstatus/batchstatus sleep (seconds)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    emit(run(args.queues, args.sleep, args.status_sleep), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
