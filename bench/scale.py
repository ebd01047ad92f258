"""Benchmarks 2 and 3: the cost of a cycle of every queue at scale, and how it grows with queues.

One PanDA endpoint (tests/panda_double.py on 127.0.0.1, serving a job
statistics answer for 2,000 sites) and one Slurm status view of 200,000
pilots (a stand-in ``squeue`` on PATH printing a recorded-format listing,
bench/standin.py: a single-node cluster cannot hold 200,000 jobs). The same
endpoints serve 200, 1,000 and 2,000 queues.

Each measurement runs in a fresh process (so its peak RSS is its own):

- baseline: fetch and parse the statistics answer once (requests + json),
  run the stand-in squeue and split its listing into fields once; the median
  of 5 tries, CPU (process + children) and wall time.
- factory at N queues (one thread per queue, status sleep = apfqueue.sleep =
  T): from ``Factory.start()`` until every queue has finished its first cycle
  (wall, CPU, HTTP requests, squeue calls); then ``STEADY_INTERVALS`` whole
  status intervals in steady state (CPU per interval: their median; requests
  and squeue calls per interval, cycles); peak threads; peak RSS (VmHWM).

WMS work per site is below the pilots already pending, so the chain says 0
and nothing is submitted: what is measured is status and planning.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from autopyfactory import memory
from autopyfactory.cli.daemon import setup_logging
from bench.common import (
    cpu_by_thread_kind,
    cpu_seconds,
    emit,
    machine,
    make_factory,
    median,
    peak_rss_mb,
    rusage,
    section,
    threads,
    write_config,
)
from bench.standin import (
    count_calls,
    panda_statistics,
    site,
    squeue_command,
    squeue_listing,
)
from tests.waiting import wait_for

FACTORY = "bench2"
SIZES = (200, 1000, 2000, 5000)
TARGETS = {  # issue 27; the ratios are to the baseline measured in the same run
    "steady_ratio": 2.0,  # CPU per status interval, steady state
    "first_cycle_ratio": 3.0,  # CPU from start until every queue has cycled once
    "peak_rss_mb": 150,  # at 2,000 queues / 200,000 pilots
    "calls_per_interval": 1,  # HTTP requests and squeue calls per status interval
}
STEADY_INTERVALS = 4  # steady CPU: the median of this many status intervals
SITES = 2000
PILOTS = 200_000
STATS_PATH = "/statistics/active_job_stats_by_site"
CHAIN = "Ready, Scale, MaxPerCycle, MinPerCycle, StatusTest, StatusOffline, MaxPending"


# ---------------------------------------------------------------- workers (fresh processes)


def baseline_worker(url: str, squeue: str, sites: int, pilots: int, tries: int = 5) -> dict:
    """What any client pays for the two status answers, once."""
    import requests

    from autopyfactory.plugins.batchstatus.slurm import SQUEUE_FORMAT

    session = requests.Session()
    fetch_cpu, fetch_wall, squeue_cpu, squeue_wall = [], [], [], []
    for _ in range(tries):
        cpu, wall = cpu_seconds(), time.monotonic()
        answer = session.get(url + STATS_PATH, timeout=60)
        answer.raise_for_status()
        data = json.loads(answer.content)["data"]
        fetch_cpu.append(cpu_seconds() - cpu)
        fetch_wall.append(time.monotonic() - wall)
        cpu, wall = cpu_seconds(), time.monotonic()
        done = subprocess.run([squeue, "-h", "-r", "-t", "all", "-O", SQUEUE_FORMAT], capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
        rows = [line.split("|") for line in done.stdout.splitlines()]
        squeue_cpu.append(cpu_seconds() - cpu)
        squeue_wall.append(time.monotonic() - wall)
        if len(data) != sites or len(rows) != pilots:
            raise RuntimeError(f"expected {sites} sites and {pilots} pilots, got {len(data)} and {len(rows)}")
        del rows, data
    return {
        "fetch_cpu": median(fetch_cpu), "fetch_wall": median(fetch_wall),
        "squeue_cpu": median(squeue_cpu), "squeue_wall": median(squeue_wall),
        "cpu": median(fetch_cpu) + median(squeue_cpu), "wall": median(fetch_wall) + median(squeue_wall),
        "peak_rss_mb": peak_rss_mb(),
    }


def queues_conf(n: int, url: str) -> str:
    common = {
        "wmsstatusplugin": "Panda",
        "wmsstatus.panda.url": url,
        "batchstatusplugin": "Slurm",
        "batchsubmitplugin": "Slurm",
        "batchsubmit.slurm.sbatch": "/bin/false",  # nothing is submitted; if it were, it would show as errors
        "schedplugin": CHAIN,
        "sched.maxpercycle.maximum": 100,
        "sched.minpercycle.minimum": 0,
        "sched.maxpending.maximum": 100,
    }
    text = section("DEFAULT", common)
    for i in range(n):
        text += f"[{site(i)}]\napfqueue.sleep = %(interval)s\n\n"
    return text


def factory_worker(n: int, url: str, squeue_calls: Path, root: Path, interval: float, steady: bool = True) -> dict:
    text = queues_conf(n, url).replace("%(interval)s", f"{interval:g}")
    conf = write_config(root, text, {
        "wmsstatus.panda.sleep": interval, "wmsstatus.panda.maxage": 10 * interval,
        "batchstatus.slurm.sleep": interval, "batchstatus.slurm.maxage": 10 * interval,
    }, FACTORY)
    setup_logging(str(root / "factory.log"), "info")  # as the daemon logs (a worker process of its own)
    started = time.monotonic()
    factory, _ = make_factory(conf)
    config_seconds = time.monotonic() - started
    store, statements = factory.store, [0]
    if store is not None and store.usable:  # SQL statements the factory runs (reads and writes)
        store._conn.set_trace_callback(lambda _: statements.__setitem__(0, statements[0] + 1))

    peak = [threads()]

    def all_cycled() -> bool:
        peak[0] = max(peak[0], threads())
        return all(q.cycles >= 1 for q in factory.queues.values())

    cpu0, wall0, epoch0 = cpu_seconds(), time.monotonic(), time.time()
    factory.start()
    start_cpu = cpu_seconds() - cpu0  # building, restoring and scheduling every queue (no status query yet)
    # the daemon's main thread waits in Factory.wait (pauses that end, dead threads, memory trims): so here
    threading.Thread(target=factory.wait, name="main-loop", daemon=True).start()
    try:
        wait_for(all_cycled, "the first cycle of every queue", timeout=20 * interval)
        cpu1, wall1 = cpu_seconds(), time.monotonic()
        wms = next(p for (kind, _), p in factory.status.pollers.items() if kind == "wmsstatus")
        batch = next(p for (kind, _), p in factory.status.pollers.items() if kind == "batchstatus")
        startup = {"http": wms.plugin.requests, "squeue": count_calls(squeue_calls)}
        unknown = sum(1 for q in factory.queues.values() if q.records[-1].wms is None or q.records[-1].batch is None)
        result = {
            "queues": n,
            "config_load_seconds": config_seconds,
            "first_cycle_wall": wall1 - wall0,
            "first_cycle_cpu": cpu1 - cpu0,
            "first_cycle_start_cpu": start_cpu,
            "first_cycle_http": startup["http"],
            "first_cycle_squeue": startup["squeue"],
            "first_cycle_unknown": unknown,
            "interval": interval,
        }
        if not steady:
            result.update(errors=sum(q.errors_total for q in factory.queues.values()),
                          submitted=sum(q.submitted_total for q in factory.queues.values()),
                          peak_threads=peak[0], peak_rss_mb=peak_rss_mb())
            return result
        # steady state: STEADY_INTERVALS whole intervals, each one's ends half-way between two polls
        first_poll = wall0 + (min(wms.snapshot.taken, batch.snapshot.taken) - epoch0)
        k = 1
        while first_poll + interval / 2 + k * interval < wall1:
            k += 1
        window_start = first_poll + interval / 2 + k * interval
        wait_for(lambda: time.monotonic() >= window_start and all_cycled(), "the steady window",
                 timeout=20 * interval)
        cpu2, http2, squeue2, usage2 = cpu_seconds(), wms.plugin.requests, count_calls(squeue_calls), rusage()
        cycles2 = sum(q.cycles for q in factory.queues.values())
        store2 = (store.flushes, statements[0]) if store is not None else (0, 0)
        cpus = [cpu2]  # at each interval's end: the median interval, so one disturbed interval does not count
        threads2 = cpu_by_thread_kind()
        for j in range(1, STEADY_INTERVALS + 1):
            wait_for(lambda j=j: time.monotonic() >= window_start + j * interval and all_cycled(),
                     "the window's end", timeout=(j + 2) * interval)
            cpus.append(cpu_seconds())
        http3, squeue3, usage3 = wms.plugin.requests, count_calls(squeue_calls), rusage()
        threads3 = cpu_by_thread_kind()
        cycles3 = sum(q.cycles for q in factory.queues.values())
        store3 = (store.flushes, statements[0]) if store is not None else (0, 0)
        errors = sum(q.errors_total for q in factory.queues.values())
        submitted = sum(q.submitted_total for q in factory.queues.values())
        poll_seconds = {"wms": wms.last_duration, "batch": batch.last_duration}
    finally:
        factory.stop(timeout=60)
    result.update({
        "steady_cpu_per_interval": median([b - a for a, b in zip(cpus, cpus[1:], strict=False)]),
        "steady_cpu_intervals": [round(b - a, 3) for a, b in zip(cpus, cpus[1:], strict=False)],
        "steady_http_per_interval": (http3 - http2) / STEADY_INTERVALS,
        "steady_squeue_per_interval": (squeue3 - squeue2) / STEADY_INTERVALS,
        "steady_cycles_per_interval": (cycles3 - cycles2) / STEADY_INTERVALS,
        "steady_rusage_per_interval": {k: (usage3[k] - usage2[k]) / STEADY_INTERVALS for k in usage2},
        # where the process's own CPU goes, by kind of thread (squeue's CPU is the children's, not here)
        "steady_cpu_by_thread_per_interval": {k: round((threads3.get(k, 0.0) - threads2.get(k, 0.0))
                                                       / STEADY_INTERVALS, 3) for k in threads3},
        # deterministic counts: what a cycle costs does not depend on the machine's load
        "steady_store_transactions_per_interval": (store3[0] - store2[0]) / STEADY_INTERVALS,
        "steady_sql_statements_per_interval": (store3[1] - store2[1]) / STEADY_INTERVALS,
        "poll_seconds": poll_seconds,
        "errors": errors,
        "submitted": submitted,
        "peak_threads": peak[0],
        "peak_rss_mb": peak_rss_mb(),
    })
    return result


# ---------------------------------------------------------------- the driver


def _worker(args: list[str], env: dict[str, str], profile: str | None = None) -> dict:
    argv = [sys.executable, "-m", "bench.scale", *args]
    if profile:  # py-spy (pip install py-spy) samples every thread; its "raw" output feeds flamegraph tools
        os.makedirs(profile, exist_ok=True)
        name = "-".join(a.strip("-") for a in args if not a.startswith(("http", "/")))
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        argv = [spy, "record", "--nonblocking", "--format", "raw", "--rate", "200",
                "--output", os.path.join(profile, f"{name}.txt"), "--", *argv]
        # with glibc's thread caches already off the daemon does not execute itself again
        # (autopyfactory.memory), which py-spy would not follow: the profile would end at the imports
        env = {**env, "GLIBC_TUNABLES": memory.NO_THREAD_CACHE}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, env=env, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"bench.scale {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def endpoints_for(n: int, sites: int, pilots: int) -> tuple[int, int]:
    """(sites, pilots) of the status answers a run of ``n`` queues reads: the standard ones
    (2,000 sites, 200,000 pilots) up to 2,000 queues; beyond, one site and as many pilots
    per queue as there (5,000 queues: 500,000 pilots), with a baseline of their own."""
    if n <= sites:
        return sites, pilots
    return n, pilots * n // sites


def run(sizes: tuple[int, ...], interval: float, sites: int = SITES, pilots: int = PILOTS,
        profile: str | None = None, steady: bool = True) -> dict:
    """Baseline, then the factory at each size; ``steady=False`` measures the first cycle only."""
    from tests.panda_double import PandaDouble

    results = []
    baselines: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="apf-bench2-") as tmp:
        root = Path(tmp)
        for n in sizes:
            n_sites, n_pilots = endpoints_for(n, sites, pilots)
            key = f"{n_sites}/{n_pilots}"
            folder = root / key.replace("/", "-")
            listing = folder / "squeue-listing.txt"
            if not listing.exists():
                folder.mkdir(parents=True)
                listing.write_text(squeue_listing(FACTORY, n_sites, n_pilots))
            script, calls = squeue_command(folder / "bin", listing)
            env = {**os.environ, "PATH": f"{script.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   "APF_BENCH_SITES": str(n_sites), "APF_BENCH_PILOTS": str(n_pilots)}
            double = PandaDouble()
            double.stats = panda_statistics(n_sites)
            double.up()
            try:
                if key not in baselines:
                    baselines[key] = _worker(["--worker", "baseline", "--url", double.url], env, profile)
                    baselines[key].update(sites=n_sites, pilots=n_pilots)
                baseline = baselines[key]
                calls.write_text("")
                before = double.count()
                result = _worker(["--worker", "factory", "--queues", str(n), "--url", double.url,
                                  "--interval", str(interval), "--root", str(root / f"q{n}"),
                                  *([] if steady else ["--first-cycle-only"])], env, profile)
            finally:
                double.close()
            result["server_requests"] = double.count() - before
            result["baseline"] = key
            result["cpu_ratio_first_cycle"] = result["first_cycle_cpu"] / baseline["cpu"]
            if steady:
                result["cpu_ratio_steady"] = result["steady_cpu_per_interval"] / baseline["cpu"]
            results.append(result)
            print(f"{n} queues: first cycle {result['first_cycle_wall']:.2f}s wall "
                  f"{result['first_cycle_cpu']:.2f}s CPU; steady {result.get('steady_cpu_per_interval', 0):.2f}s "
                  f"CPU/interval; baseline {baseline['cpu']:.2f}s CPU; peak RSS {result['peak_rss_mb']:.0f} MB",
                  file=sys.stderr)
    by_size = {r["queues"]: r for r in results}
    growth = {}
    for small, large in zip(sizes, sizes[1:], strict=False):
        growth[f"{large}/{small}"] = {
            "queues": large / small,
            "first_cycle_cpu": by_size[large]["first_cycle_cpu"] / by_size[small]["first_cycle_cpu"],
            "first_cycle_wall": by_size[large]["first_cycle_wall"] / by_size[small]["first_cycle_wall"],
        }
        if steady:
            growth[f"{large}/{small}"]["steady_cpu"] = (by_size[large]["steady_cpu_per_interval"]
                                                       / by_size[small]["steady_cpu_per_interval"])
    standard = f"{sites}/{pilots}"
    return {
        "benchmark": "scale",
        "machine": machine(),
        "sites": sites,
        "pilots": pilots,
        "interval": interval,
        "baseline": baselines.get(standard) or next(iter(baselines.values())),
        "baselines": baselines,
        "sizes": results,
        "growth": growth,
        "targets": TARGETS,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="queue counts (comma list)")
    p.add_argument("--interval", type=float, default=15.0, help="status sleep = apfqueue.sleep (seconds)")
    p.add_argument("--sites", type=int, default=SITES)
    p.add_argument("--pilots", type=int, default=PILOTS)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--profile", default=None, metavar="DIR", help="run each process under py-spy, profiles in DIR")
    p.add_argument("--first-cycle-only", action="store_true", help="skip the steady-state intervals")
    p.add_argument("--worker", choices=["baseline", "factory"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--queues", type=int, help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        if args.worker == "baseline":
            result = baseline_worker(args.url, "squeue", int(os.environ.get("APF_BENCH_SITES", SITES)),
                                     int(os.environ.get("APF_BENCH_PILOTS", PILOTS)))
        else:
            # as the daemon runs (cli/daemon.py): glibc's thread caches off, two malloc arenas
            memory.without_thread_caches()
            memory.limit_arenas()
            bindir = Path(os.environ["PATH"].split(os.pathsep)[0])
            result = factory_worker(args.queues, args.url, bindir / "squeue.calls", Path(args.root), args.interval,
                                    steady=not args.first_cycle_only)
        print(json.dumps(result))
        return 0
    sizes = tuple(int(s) for s in args.sizes.split(","))
    emit(run(sizes, args.interval, args.sites, args.pilots, args.profile, not args.first_cycle_only), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
