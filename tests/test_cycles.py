"""The cycle workers (autopyfactory/cycles.py): a few threads run every queue's cycles, each queue
keeps its isolation. Attacked: overlapping cycles of one queue, a hung plugin call, a backlog,
a wake-up lost while a cycle runs, a stop that waits for a far cycle."""

from __future__ import annotations

import random
import threading
import time

from autopyfactory import cycles
from autopyfactory.cycles import CycleRunner
from autopyfactory.factory import Factory
from tests.conftest import local_queue, wait_for


class Job:
    """A queue as the runner sees it: ``step`` records when it ran and returns its next time."""

    def __init__(self, name: str, every: float = 0.0, work: float = 0.0, steps: int | None = None):
        self.name = name
        self.every, self.work, self.limit = every, work, steps
        self.runs: list[tuple[float, float]] = []
        self.inside = 0
        self.overlaps = 0
        self.gate: threading.Event | None = None  # set: the step waits for it (a hung plugin call)

    def step(self) -> float | None:
        self.inside += 1
        if self.inside > 1:
            self.overlaps += 1
        start = time.time()
        if self.gate is not None:
            self.gate.wait(30)
        if self.work:
            time.sleep(random.uniform(0, self.work))
        self.runs.append((start, time.time()))
        self.inside -= 1
        if self.limit is not None and len(self.runs) >= self.limit:
            return None
        return time.time() + self.every


def test_no_queue_ever_runs_two_steps_at_once_even_when_woken_while_it_runs():
    runner = CycleRunner(workers=4)
    jobs = [Job(f"Q{i}", every=0.0, work=0.004, steps=40) for i in range(12)]
    for job in jobs:
        runner.schedule(job, time.time())
    stop = threading.Event()

    def wake_at_random():  # stop(), a first answer: wake-ups from other threads at any moment
        while not stop.is_set():
            runner.wake(random.choice(jobs))
            time.sleep(0.0005)

    wakers = [threading.Thread(target=wake_at_random) for _ in range(3)]
    for waker in wakers:
        waker.start()
    try:
        wait_for(lambda: all(len(j.runs) == 40 for j in jobs), what="40 steps of every job", timeout=60)
    finally:
        stop.set()
        for waker in wakers:
            waker.join()
        runner.stop()
    assert sum(j.overlaps for j in jobs) == 0
    for job in jobs:  # and none ran again after it left
        assert len(job.runs) == 40
        assert all(a[1] <= b[0] for a, b in zip(job.runs, job.runs[1:], strict=False)), job.name


def test_a_hung_step_holds_one_worker_and_the_watchdog_gives_the_others_another():
    runner = CycleRunner(workers=1, late=0.3, watch_every=0.05)
    hung, other = Job("HUNG"), Job("OTHER", every=0.05)
    hung.gate = threading.Event()
    runner.schedule(hung, time.time())
    wait_for(lambda: hung.inside == 1, what="HUNG in its step")
    runner.schedule(other, time.time())
    try:
        wait_for(lambda: len(other.runs) >= 5, what="OTHER to cycle on while HUNG hangs", timeout=5)
        assert runner.extra_started == 1 and runner.threads == 2
        assert [name for name, _ in runner.busy()][:1] == ["HUNG"]
        hung.gate.set()  # the hung call returns: the pool shrinks back to its size
        hung.gate = None
        wait_for(lambda: runner.threads == 1, what="the extra worker to end", timeout=5)
        ran = len(hung.runs)
        wait_for(lambda: len(hung.runs) > ran + 2 and len(other.runs) > 10, what="both to cycle on")
    finally:
        runner.stop()
    assert hung.overlaps == other.overlaps == 0


def test_a_backlog_of_short_cycles_starts_no_extra_worker():
    # 300 queues due at once (a factory's start): late counts a held worker, not a queue waiting its turn
    runner = CycleRunner(workers=2, late=0.05, watch_every=0.01)
    jobs = [Job(f"Q{i}", steps=1, work=0.002) for i in range(300)]
    for job in jobs:
        runner.schedule(job, time.time())
    try:
        wait_for(lambda: all(j.runs for j in jobs), what="every job's step", timeout=30)
    finally:
        runner.stop()
    assert runner.extra_started == 0 and runner.threads <= 2


def test_a_wake_up_that_comes_while_the_step_runs_is_not_lost():
    runner = CycleRunner(workers=2)
    job = Job("Q", every=3600.0)
    job.gate = threading.Event()
    runner.schedule(job, time.time())
    try:
        wait_for(lambda: job.inside == 1, what="the step to run")
        runner.wake(job)  # e.g. stop() or the first answer, while the step still runs
        job.gate.set()
        job.gate = None
        wait_for(lambda: len(job.runs) == 2, what="the next step at once, not in an hour", timeout=5)
    finally:
        runner.stop()


def test_a_stopped_queue_leaves_at_once_not_at_its_next_cycle(confdir):
    confdir.write(local_queue("SLOW", confdir.spool, **{"apfqueue.sleep": "3600"})
                  + local_queue("FAST", confdir.spool))
    factory = Factory(confdir.load())
    factory.start()
    try:
        slow = factory.queues["SLOW"]
        wait_for(lambda: slow.cycles >= 1, what="SLOW's first cycle")
        started = time.monotonic()
        factory.stop_queue("SLOW", timeout=10)
        assert time.monotonic() - started < 2 and not slow.alive
        fast = factory.queues["FAST"]
        cycles = fast.cycles
        wait_for(lambda: fast.cycles > cycles + 2, what="FAST to cycle on")
    finally:
        factory.stop()


HANGS = '''
import os, time
from autopyfactory.config import Key
from autopyfactory.interfaces import SchedulerPlugin

class Hangs(SchedulerPlugin):
    name = "Hangs"
    keys = {"marker": Key("path", "")}

    def calc(self, n, info):
        deadline = time.time() + 60
        while os.path.exists(self.options["marker"]) and time.time() < deadline:
            time.sleep(0.02)
        return 0, "Hangs: 0"
'''


def test_queues_whose_plugins_hang_hold_no_other_queue(confdir, tmp_path, monkeypatch):
    # more hung queues than workers: with no watchdog OTHER would never cycle again
    monkeypatch.setattr(cycles, "LATE", 0.5)
    monkeypatch.setattr(cycles, "WATCH_EVERY", 0.1)
    marker = tmp_path / "hang"
    confdir.dropin("hangs.py", HANGS)
    hung = [f"HUNG{i}" for i in range(cycles.WORKERS + 2)]
    confdir.write("".join(local_queue(name, confdir.spool, schedplugin="Hangs", **{"sched.hangs.marker": str(marker)})
                          for name in hung) + local_queue("OTHER", confdir.spool))
    factory = Factory(confdir.load())
    factory.start()
    try:
        other = factory.queues["OTHER"]
        wait_for(lambda: all(factory.queues[n].cycles >= 1 for n in hung) and other.cycles >= 2,
                 what="every queue cycling")
        marker.touch()  # from now on every HUNG queue's cycle hangs
        wait_for(lambda: len(factory.runner.busy()) == len(hung), what="every HUNG queue in a hung cycle")
        cycles_then = other.cycles
        wait_for(lambda: other.cycles >= cycles_then + 5, what="OTHER to cycle on", timeout=15)
        assert "cycle workers:" in factory.thread_dump() and "HUNG0 for" in factory.thread_dump()
        marker.unlink()
        wait_for(lambda: not factory.runner.busy() or all(n == "OTHER" for n, _ in factory.runner.busy()),
                 what="the hung cycles to return")
        wait_for(lambda: factory.runner.threads <= cycles.WORKERS + 1, what="the pool to shrink back", timeout=15)
        counts = {n: factory.queues[n].cycles for n in hung}
        wait_for(lambda: all(factory.queues[n].cycles > counts[n] for n in hung), what="HUNG queues to cycle again")
    finally:
        marker.unlink(missing_ok=True)
        factory.stop()


def test_a_step_that_raises_even_systemexit_costs_no_worker():
    class Exits(Job):
        def step(self):
            super().step()
            raise SystemExit("a plugin called sys.exit()")

    runner = CycleRunner(workers=2)
    bad, good = Exits("BAD"), Job("GOOD", every=0.02)
    runner.schedule(bad, time.time())
    runner.schedule(good, time.time())
    try:
        wait_for(lambda: len(good.runs) >= 20, what="GOOD to cycle on")
        assert len(bad.runs) == 1 and runner.threads == 2  # not run again, and both workers still there
    finally:
        runner.stop()


def test_a_cycle_slower_than_its_interval_is_never_run_twice_at_once():
    runner = CycleRunner(workers=4)
    slow = Job("SLOW", every=-1.0, work=0.05, steps=10)  # always due again before its step ends
    runner.schedule(slow, time.time())
    try:
        wait_for(lambda: len(slow.runs) == 10, what="ten steps")
    finally:
        runner.stop()
    assert slow.overlaps == 0


def test_idle_workers_wake_once_a_tick_not_once_a_cycle():
    # 200 queues spread over a second, each cycling every second: 400 cycles in two seconds. Waking
    # every idle worker for each (a rescheduled queue notified them, all waited for the same first
    # due time) was 12,000 wake-ups an interval at 2,000 queues, a third of the factory's CPU.
    runner = CycleRunner(workers=4)
    start = time.time() + 0.2
    jobs = [Job(f"Q{i}", every=1.0) for i in range(200)]
    for i, job in enumerate(jobs):
        runner.schedule(job, start + i / 200)
    time.sleep(0.2)
    before = runner.wakeups
    time.sleep(2.0)
    woke = runner.wakeups - before
    runner.stop()
    assert sum(len(j.runs) for j in jobs) >= 350
    assert woke <= runner.workers * 2.0 / cycles.TICK * 1.5, woke


def test_a_burst_of_due_cycles_runs_on_every_worker():
    # 100 queues woken at once by their first status answer, each submitting (sbatch, 10 ms): the
    # workers that slept until a later time must join in, or the burst runs on one worker (1.45 x raw
    # sbatch in bench.submit's 100 queues x 20)
    runner = CycleRunner(workers=4)
    jobs = [Job(f"Q{i}", every=3600.0, work=0.0) for i in range(40)]
    for job in jobs:
        runner.schedule(job, time.time() + 3600)  # waiting for their first status
    time.sleep(0.2)
    busy = threading.Semaphore(0)
    peak = [0]
    inside = [0]
    lock = threading.Lock()

    def step(job=None, original=None):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        busy.release()
        return original()

    for job in jobs:
        job.step = lambda job=job, original=job.step: step(job, original)
    started = time.monotonic()
    for job in jobs:
        runner.wake(job)
    for _ in jobs:
        assert busy.acquire(timeout=10)
    took = time.monotonic() - started
    runner.stop()
    assert peak[0] == 4, peak
    assert took < 40 * 0.05 / 2, took  # one worker alone takes 2 s
