"""The workers that run every queue's cycles: a few threads, one timer heap.

A queue is not a thread of its own. Each queue is on the heap with the time
of its next cycle; a worker takes the queue that is due, runs that one cycle
(``step``) and puts the queue back with the time the step returned. 2,000
queue threads cost about 40 MB of thread stacks at 2,000 queues for no CPU
saved (docs/performance.md, "One thread per queue, or a pool?").

Each queue keeps its isolation:

- **never two cycles of one queue at once**: a queue is on the heap only while
  no worker runs it, and a worker puts it back only after its step returned;
- **a hung plugin call holds one worker, never the factory**: a watchdog looks
  every ``WATCH_EVERY`` seconds, and for every worker held by one step for
  ``LATE`` seconds, while another queue's cycle is due, it starts one more
  worker. In the worst case (every queue hangs at once) there is one worker
  per queue, as with a thread per queue. A worker beyond ``workers`` (held
  ones not counted) ends when it finds nothing due, so the pool shrinks back
  once the held steps return.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

WORKERS = 4  # worker threads kept at all times
LATE = 5.0  # seconds one step may hold a worker before the watchdog starts another (when a cycle is due)
WATCH_EVERY = 1.0  # seconds between two looks of the watchdog
# idle workers wake at multiples of TICK seconds, so the cycles due within one tick start together:
# 2,000 queues spread over a 15 s interval woke the workers 12,000 times an interval otherwise
TICK = 0.1


class Cycling(Protocol):
    """What the runner needs of a queue."""

    name: str

    def step(self) -> float | None:
        """Run one cycle (or whatever is due); the time of the next step, or None to leave the runner."""


class CycleRunner:
    """Runs the steps of many queues on a few worker threads (see the module's doc)."""

    def __init__(self, workers: int | None = None, late: float | None = None, watch_every: float | None = None,
                 clock: Callable[[], float] = time.time):
        self.workers = max(1, int(WORKERS if workers is None else workers))
        self.late = LATE if late is None else late
        self.watch_every = WATCH_EVERY if watch_every is None else watch_every
        self._clock = clock
        self._heap: list[tuple[float, int, Cycling]] = []  # (due, entry, queue)
        self._entry: dict[int, int] = {}  # id(queue) -> its valid heap entry: a later schedule() replaces it
        self._busy: dict[int, tuple[Cycling, float]] = {}  # worker ident -> (queue, since)
        self._count = itertools.count()
        self._names = itertools.count(1)
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._woken: set[int] = set()  # id() of queues woken while a worker ran them: their next step is now
        self._replaced: set[int] = set()  # workers held by a long step that got a replacement
        self._stopped = False
        self.extra_started = 0  # workers the watchdog started (a hung or slow cycle held the others)
        self.wakeups = 0  # times an idle worker woke (to look at the heap)
        self._watchdog: threading.Thread | None = None

    # ------------------------------------------------------------ queues
    def schedule(self, queue: Cycling, when: float) -> None:
        """Run ``queue``'s next step at ``when`` (it replaces a step already scheduled for it)."""
        with self._cond:
            entry = next(self._count)
            self._entry[id(queue)] = entry
            heapq.heappush(self._heap, (when, entry, queue))
            if self._heap[0][1] == entry:  # the new first: the waiting workers' time is too late
                self._cond.notify()
        if not self._threads:
            self.start()

    def wake(self, queue: Cycling) -> None:
        """Run ``queue``'s next step now: at once if it waits for it, as soon as its step ends if one runs."""
        with self._cond:
            if id(queue) in self._entry:  # waiting on the heap: now
                self.schedule(queue, self._clock())
            elif any(running is queue for running, _ in self._busy.values()):
                self._woken.add(id(queue))  # in a step: _work puts it back for now
            # else: not on the runner (stopped, died, not started)

    # ------------------------------------------------------------ workers
    def start(self) -> None:
        with self._cond:
            if self._threads or self._stopped:
                return
            for _ in range(self.workers):
                self._start_worker()
        self._watchdog = threading.Thread(target=self._watch, name="cycles-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        """Workers end once their step returns; queues still on the heap are not run again."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def threads(self) -> int:
        with self._cond:
            return sum(1 for t in self._threads if t.is_alive())

    def busy(self) -> list[tuple[str, float]]:
        """(queue, seconds) of every step under way, longest first."""
        now = self._clock()
        with self._cond:
            running = [(queue.name, now - since) for queue, since in self._busy.values()]
        return sorted(running, key=lambda item: -item[1])

    def _start_worker(self) -> None:  # with self._cond held
        thread = threading.Thread(target=self._work, name=f"cycles-{next(self._names)}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _take(self) -> Cycling | None:
        """The next due queue (waiting for it), or None when this worker should end."""
        with self._cond:
            while not self._stopped:
                while self._heap and self._entry.get(id(self._heap[0][2])) != self._heap[0][1]:
                    heapq.heappop(self._heap)  # replaced by a later schedule() of the same queue
                if self._heap:
                    due, _, queue = self._heap[0]
                    now = self._clock()
                    wait = due - now
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        del self._entry[id(queue)]
                        self._busy[threading.get_ident()] = (queue, self._clock())
                        if self._heap and self._heap[0][0] <= now:
                            self._cond.notify()  # more are due (a burst): another worker takes the next
                        return queue
                    wait = -(-due // TICK) * TICK - now  # up to the tick the first due cycle falls in
                else:
                    wait = None
                if self._surplus():
                    return None
                self._cond.wait(wait)
                self.wakeups += 1
            return None

    def _surplus(self) -> bool:  # with self._cond held: a worker beyond ``workers`` with nothing due ends
        alive = [t for t in self._threads if t.is_alive()]
        if len(alive) - len(self._replaced) <= self.workers:  # a held worker does not count
            return False
        self._threads = [t for t in alive if t is not threading.current_thread()]
        return True

    def _work(self) -> None:
        me = threading.current_thread()
        own_name = me.name
        while True:
            queue = self._take()
            if queue is None:
                return
            me.name = f"queue:{queue.name}"  # a thread dump shows which queue a worker is in
            when: float | None = None
            try:
                when = queue.step()
            except BaseException:  # noqa: BLE001 - step() reports its own failures; a worker never dies of one
                log.exception("queue %s: its step failed outside the cycle; it is not run again", queue.name)
            finally:
                me.name = own_name
                with self._cond:  # one hold: a wake() comes either before (woken) or after (on the heap)
                    self._busy.pop(threading.get_ident(), None)
                    self._replaced.discard(threading.get_ident())
                    woken = id(queue) in self._woken
                    self._woken.discard(id(queue))
                    if when is not None:
                        self.schedule(queue, min(when, self._clock()) if woken else when)

    def _watch(self) -> None:
        while True:
            time.sleep(self.watch_every)
            with self._cond:
                if self._stopped:
                    return
                self._check()

    def _check(self) -> None:  # with self._cond held
        """Replace every worker held by one step for ``late`` seconds, while a cycle is due.

        Only held workers are replaced, not a backlog: 2,000 first cycles due at
        once keep the pool at its size, a hung plugin call gets one more worker."""
        now = self._clock()
        held = [ident for ident, (_, since) in self._busy.items()
                if now - since >= self.late and ident not in self._replaced]
        if not held or not any(due <= now and self._entry.get(id(queue)) == entry
                               for due, entry, queue in self._heap):
            return
        names = ", ".join(f"{self._busy[ident][0].name} ({now - self._busy[ident][1]:.0f}s)" for ident in held)
        log.info("cycle worker(s) held by a long step: %s; starting %d more so the other queues cycle on",
                    names, len(held))
        for ident in held:
            self._replaced.add(ident)
            self._start_worker()
        self.extra_started += len(held)
