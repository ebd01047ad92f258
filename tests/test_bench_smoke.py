"""Small versions of the benchmarks (bench/): they run end to end and measure what they claim.

No timing is asserted (the figures come from ``make bench``); what is checked
is the behaviour the benchmarks rely on: the factory submits every pilot in one
cycle and they are cancelled afterwards, one status query per endpoint serves
every queue's first cycle, a pilot reaches Slurm once work appears.
"""

from __future__ import annotations

import logging
import subprocess

from autopyfactory.plugins.batchstatus.slurm import Slurm
from bench import reaction, scale, submit
from bench.standin import squeue_listing


def live_jobs(ids: list[str]) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-t", "PENDING,RUNNING", "-o", "%F"], capture_output=True,
                         text=True, timeout=60).stdout.split()
    return [job for job in out if job in set(ids)]


def test_standin_listing_is_what_the_slurm_plugin_reads():
    class Context:
        factory_id = "f"
        config = None

    listing = squeue_listing("f", 3, 300)
    answer = Slurm({}, Context()).summarize(listing, ["BENCH_SITE_0000", "BENCH_SITE_0002"], now=__import__("time").time())
    info = answer["BENCH_SITE_0002"]
    assert (info.pending, info.running, info.done, info.fault) == (20, 40, 30, 10)
    assert len(listing.splitlines()) == 300


def test_submit_benchmark_smoke(slurm, monkeypatch):
    seen: list[list[str]] = []
    real_cancel = submit.cancel

    def cancel(ids):
        seen.append(list(ids))
        real_cancel(ids)

    monkeypatch.setattr(submit, "cancel", cancel)
    handlers = logging.getLogger().handlers[:]
    result = submit.run(reps=1, pilots=20, queues=2, inner=1)
    assert logging.getLogger().handlers == handlers  # the factory's log file is not left behind
    assert result["one_queue"]["ratios"] and result["many_queues"]["ratios"]
    assert all(r > 0 for r in result["one_queue"]["ratios"] + result["many_queues"]["ratios"])
    # four rounds (factory and baseline, one queue and two queues), every job cancelled
    assert len(seen) == 4 and [len(ids) for ids in seen].count(2) == 2
    assert live_jobs([job for ids in seen for job in ids]) == []


def test_scale_benchmark_smoke():
    result = scale.run(sizes=(5, 10), interval=600.0, sites=20, pilots=2000, steady=False)
    for size in result["sizes"]:
        # one query of each endpoint served the first cycle of every queue, and every queue knew its numbers
        assert size["first_cycle_http"] == 1 and size["first_cycle_squeue"] == 1, size
        assert size["server_requests"] == 1
        assert size["first_cycle_unknown"] == 0 and size["errors"] == 0 and size["submitted"] == 0
        assert size["peak_threads"] >= size["queues"]
    assert result["baseline"]["cpu"] > 0


def test_reaction_benchmark_smoke(slurm):
    result = reaction.run(queues=2, sleep=2.0, status_sleep=2.0)
    assert set(result["reaction_seconds"]) == set(result["first_pilot_state"])
    assert all(value > 0 for value in result["reaction_seconds"].values())
    assert all(state.startswith("PENDING") for state in result["first_pilot_state"].values()), result


def test_page_benchmark_smoke():
    from bench import page

    result = page.measure(5, repeat=1)
    # (a queue's own page carries its history charts: it may well outweigh a 5-queue status page)
    assert result["queues"] == 5 and result["page_bytes"] > 0 and result["queue_page_bytes"] > 0
    assert result["page"] > 0 and result["json"] > 0


def soak_samples(lives: int, life_s: float, level, leak_per_10min: float = 0.0) -> list[dict]:
    """RSS samples of a soak with a restart every ``life_s``: each life rises to ``level(t)`` in
    4 minutes, then a 5-minute trim sawtooth of 6 MB, plus ``leak_per_10min`` while it runs."""
    samples = []
    for life in range(lives):
        start = life * life_s
        for life_t in range(0, int(life_s), 10):
            t = start + life_t
            rise = min(1.0, life_t / 240)
            saw = 6.0 * ((life_t % 300) < 20) if life_t >= 300 else 0.0
            rss = 47 + (level(t) - 47) * rise - saw + leak_per_10min * life_t / 600
            samples.append({"t": float(t), "life_t": float(life_t), "rss_mb": rss})
    return samples


def test_soak_judges_rss_per_life_after_the_finished_window_fills():
    """The 2-hour Slurm soak said "RSS grows 3.1 MB per 10 minutes" of a daemon whose every life after
    the first hour settled at the same 120 MB: one slope over all lives read the first hour's filling
    window (each restart reads the last hour back) and the restarts' drops as growth."""
    from bench.soak import rss_growth_per_life, slope_per_10min

    def filling(t):  # the level a life settles to: grows while the one-hour window fills, then flat
        return 75 + 45 * min(1.0, t / 3600)

    flat = soak_samples(6, 1200, filling)
    after = [s for s in flat if s["life_t"] >= 120]
    assert slope_per_10min([(s["t"], s["rss_mb"]) for s in after]) > 1.0  # the old judgement: FAILED
    judged = rss_growth_per_life(flat, 300, 3960, 300)
    assert abs(judged["within"]) < 0.2 and abs(judged["across"]) < 0.2 and judged["lives_judged"] >= 3

    leaking = rss_growth_per_life(soak_samples(6, 1200, filling, leak_per_10min=2.0), 300, 3960, 300)
    assert 1.5 < leaking["within"] < 2.5  # a leak in a running daemon: each life climbs

    def growing(t):  # state that survives restarts keeps growing: each life settles higher
        return 75 + 45 * min(1.0, t / 3600) + 3 * t / 600

    assert rss_growth_per_life(soak_samples(6, 1200, growing), 300, 3960, 300)["across"] > 1.0


def test_cpu_by_thread_kind_counts_a_busy_thread_under_its_kind():
    import threading
    import time

    from bench.common import cpu_by_thread_kind, thread_kind

    assert [thread_kind(n) for n in ("cycles-3", "queue:ANALY_X", "batchstatus:squeue", "persistence")] == [
        "cycle workers", "cycle workers", "batchstatus", "persistence"]
    done = threading.Event()

    def spin():
        end = time.process_time() + 0.3
        while time.process_time() < end and not done.is_set():
            pass
        done.wait()

    worker = threading.Thread(target=spin, name="cycles-99")
    before = cpu_by_thread_kind().get("cycle workers", 0.0)
    worker.start()
    time.sleep(0.5)
    after = cpu_by_thread_kind().get("cycle workers", 0.0)
    done.set()
    worker.join()
    assert after - before >= 0.1
