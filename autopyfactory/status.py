"""Shared status: one poller thread per endpoint, whatever the number of queues.

A poller asks its plugin for the status of every queue interested in it,
every ``sleep`` seconds, and keeps the last good answer with the time the
query *started* (so the answer is known to include everything submitted
before that moment). A queue asking for its numbers gets ``None`` (unknown)
when there is no answer yet, when the last good answer is older than
``maxage``, or when the answer does not mention it (or marks it ``Unknown``).

Failures are handled here, once, for every status plugin (WMS and batch):

- every call has a hard deadline (``maxage``: an answer slower than that
  could never be fresh), on top of the plugin's own timeouts; a call past
  it is abandoned and the next one goes ahead, up to 3 abandoned calls
  still running (then calls fail at once until one returns);
- a failed call is retried from the poller thread (never from a queue's
  cycle) after 1, 2, 4, ... seconds, at most ``sleep``;
- a circuit breaker per endpoint: after ``breakerfailures`` consecutive
  failures the endpoint is left alone for ``breakercooldown`` seconds, then
  one probe call decides (success closes the breaker, failure opens it again);
- every queue's entry of an answer is checked (the expected type, counts
  that are whole numbers from 0 to ``info.MAX_COUNT``): a bad entry is
  unknown for that queue only, with the reason, and nothing downstream
  (the factory-wide count, the views) ever sees it;
- ``health()`` shows all of it (breaker state, last error, last success,
  consecutive failures) for the status page and the metrics.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from autopyfactory.commands import TimedCaller
from autopyfactory.config import QueueConfig
from autopyfactory.context import FactoryContext
from autopyfactory.info import check_batch, check_wms
from autopyfactory.interfaces import StatusPlugin

log = logging.getLogger(__name__)


BREAKER_CLOSED = "closed"  # calls go through
BREAKER_OPEN = "open"  # cooling down: no calls until the cool-down ends
BREAKER_HALF_OPEN = "half-open"  # one probe call decides

DEFAULT_BREAKER_FAILURES = 3
MAX_ABANDONED_CALLS = 3  # hung status calls left running per endpoint before calls stop
RETRY_FIRST = 1.0  # first retry after a failure (seconds); doubles up to ``sleep``
WAKE_MIN_GAP = 1.0  # wake-ups never make two queries closer than this (or ``sleep``)


@dataclass(frozen=True)
class Snapshot:
    data: dict[str, Any]
    taken: float  # when the query started (epoch seconds)


@dataclass(frozen=True)
class Unknown:
    """What a status plugin puts in its answer for a key it could not determine.

    The key is then unknown (never zero) and ``reason`` is shown in the cycle
    message, e.g. ``Unknown("no status for ANALY_X in the queue information")``.
    """

    reason: str


CHECKS = {"wmsstatus": check_wms, "batchstatus": check_batch}  # what each kind's answers must be


class StatusPoller:
    """Polls one status plugin instance (one endpoint) from its own thread."""

    def __init__(
        self,
        kind: str,
        plugin: StatusPlugin,
        endpoint: str,
        sleep: float,
        maxage: float,
        breaker_failures: int = DEFAULT_BREAKER_FAILURES,
        breaker_cooldown: float | None = None,
        call_timeout: float | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.kind = kind
        # epoch seconds: answers are compared with submission times; tests pass a fake clock
        self.clock = clock
        self.plugin = plugin
        self.endpoint = endpoint  # identity: queues with the same one share this poller
        self.name = name or endpoint  # what operators read (URL, host, cluster)
        self.sleep = sleep
        self.maxage = maxage
        self.breaker_failures = max(1, int(breaker_failures))
        self.breaker_cooldown = float(breaker_cooldown) if breaker_cooldown else 2.0 * sleep
        self.call_timeout = float(call_timeout) if call_timeout else maxage
        self.calls = 0
        self.failures = 0  # consecutive
        self.failures_total = 0
        self.last_error: str | None = None  # kept after a success; see failures
        self.last_error_time: float | None = None
        self.last_success: float | None = None
        self.last_attempt: float | None = None
        self.last_duration: float | None = None
        self.breaker = BREAKER_CLOSED
        self.breaker_until: float | None = None  # end of the cool-down while open
        self.breaker_opened = 0  # how many times it opened
        self._caller = TimedCaller(f"{kind}:{endpoint}", MAX_ABANDONED_CALLS)
        self._snapshot: Snapshot | None = None
        self._queues: set[str] = set()
        self._bad: set[str] = set()  # keys whose last answer was invalid (warned once until it is good again)
        self._lock = threading.Lock()
        self._answered = threading.Lock()  # taken to set and to call the callbacks of the next answer
        self._on_answer: list[Callable[[], None]] = []  # called once at the next answer (call_on_answer)
        self._woken = False  # a wake-up asked for a query sooner than ``sleep``
        self._early = False  # the last query was brought forward by a wake-up
        self._wake = threading.Event()  # wake-up or stop: the thread looks again at what is due
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{kind}:{endpoint}", daemon=True)

    # -- interest of queues
    def add_queue(self, key: str) -> None:
        with self._lock:
            added = key not in self._queues
            self._queues.add(key)
        if added:
            self.wake()

    def remove_queue(self, key: str) -> None:
        with self._lock:
            self._queues.discard(key)

    @property
    def queues(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._queues)

    # -- thread
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wake(self) -> None:
        """Ask for a query soon (e.g. right after a submission).

        Wake-ups are merged: queries stay at least ``min(sleep, 1s)`` apart, at
        most one query per interval is brought forward, and an open circuit
        breaker is not shortened by them.
        """
        self._woken = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            left = self.due_in()
            if left <= 0:
                self.poll_once()
            elif self._wake.wait(left):
                self._wake.clear()

    def due_in(self) -> float:
        """Seconds until the next query is due by the poller's clock (0 or less: now).

        Queries start ``sleep`` apart (start to start), sooner after a failure
        (backoff) or a wake-up; while the circuit breaker is open, only the end
        of its cool-down counts.
        """
        now = self.clock()
        if self.breaker == BREAKER_OPEN:
            return (self.breaker_until or 0.0) - now
        if self.last_attempt is None:
            return 0.0
        wait = self._next_wait()
        if self._woken and not self._early:
            # at most one query per interval is brought forward: two per ``sleep`` at most
            wait = min(wait, self.sleep, WAKE_MIN_GAP)
        return self.last_attempt + wait - now

    def _next_wait(self) -> float:
        if self.failures == 0:
            return self.sleep
        # retry sooner after a failure, backing off up to the normal interval
        return min(self.sleep, RETRY_FIRST * 2.0 ** min(self.failures - 1, 16))

    def poll_once(self) -> None:
        """One query of the plugin (from the poller thread; tests may call it directly).

        A query while the circuit breaker is open (its cool-down over) is the probe.
        """
        queues = self.queues
        started = self.clock()
        # brought forward by a wake-up: then the next query waits the whole interval
        self._early = self.last_attempt is not None and started < self.last_attempt + self._next_wait() - 0.01
        self.last_attempt = started
        self._woken = False
        if self.breaker == BREAKER_OPEN:
            self.breaker = BREAKER_HALF_OPEN
        if not queues:
            return
        self.calls += 1
        try:
            data = self._caller(lambda: self.plugin.poll(queues), self.call_timeout)
            if not isinstance(data, dict):
                raise TypeError(f"poll() returned {type(data).__name__}, not a dict")
            data = self._checked(data)
        except Exception as exc:
            self._failed(started, exc)
            return
        finally:
            self.last_duration = self.clock() - started
        with self._answered:
            with self._lock:
                self._snapshot = Snapshot(data, started)
            callbacks, self._on_answer = self._on_answer, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("%s status from %s: a callback of its answer failed", self.kind, self.name)
        if self.failures:
            log.info("%s status from %s is back after %d failure(s)", self.kind, self.name, self.failures)
        self.failures = 0
        self.last_success = started
        self.breaker, self.breaker_until = BREAKER_CLOSED, None

    def _checked(self, data: dict) -> dict[str, Any]:
        """The answer with every entry that is not what this kind of plugin must report made Unknown."""
        check = CHECKS.get(self.kind)
        if check is None:
            return data
        checked: dict[str, Any] = {}
        for key, info in data.items():
            if not isinstance(key, str):
                continue
            why = "" if info is None or isinstance(info, Unknown) else check(info)
            if why:
                if key not in self._bad:
                    log.warning("%s status from %s for %s is invalid: %s", self.kind, self.name, key, why)
                self._bad.add(key)
                info = Unknown(f"invalid answer: {why}")
            else:
                self._bad.discard(key)
            checked[key] = info
        return checked

    def _failed(self, started: float, exc: Exception) -> None:
        self.failures += 1
        self.failures_total += 1
        message = str(exc) or "(no message)"
        self.last_error = f"{type(exc).__name__}: {message}"[:500]
        self.last_error_time = started
        if self.breaker == BREAKER_HALF_OPEN or self.failures >= self.breaker_failures:
            self.breaker = BREAKER_OPEN
            self.breaker_until = self.clock() + self.breaker_cooldown
            self.breaker_opened += 1
            log.warning("%s status from %s failed (%d in a row): %s; circuit breaker open, next try in %gs",
                        self.kind, self.name, self.failures, self.last_error, self.breaker_cooldown)
        else:
            log.warning("%s status from %s failed (%d in a row): %s",
                        self.kind, self.name, self.failures, self.last_error)

    # -- reading
    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def call_on_answer(self, since: Snapshot | None, callback: Callable[[], None]) -> bool:
        """Call ``callback`` once, at the next answer; False (and no call) if the answer is no longer ``since``.

        Queues waiting for their first status are woken this way instead of polling:
        2,000 queues checking ten times a second cost more CPU than the status query
        they waited for.
        """
        with self._answered:
            if self._snapshot is not since:
                return False
            self._on_answer.append(callback)
            return True

    def _failing(self, now: float) -> str:
        if not self.failures:
            return ""
        text = f"; last error: {self.last_error}"
        if self.breaker == BREAKER_OPEN and self.breaker_until is not None:
            text += (f"; circuit breaker open after {self.failures} failures in a row,"
                     f" next try in {max(0.0, self.breaker_until - now):.0f}s")
        return text

    def get(self, key: str, now: float | None = None) -> tuple[Any, float | None, str]:
        """(info or None, time the answer was taken, why it is unknown)."""
        now = self.clock() if now is None else now
        snapshot = self._snapshot
        if snapshot is None:
            return None, None, f"no answer yet from {self.name}{self._failing(now)}"
        age = now - snapshot.taken
        if age > self.maxage:
            return None, snapshot.taken, (
                f"answer from {self.name} is {age:.0f}s old (maxage {self.maxage:g}s){self._failing(now)}"
            )
        info = snapshot.data.get(key)
        if info is None:
            return None, snapshot.taken, f"{self.name} reports nothing for {key}"
        if isinstance(info, Unknown):
            return None, snapshot.taken, f"{self.name}: {info.reason}"
        return info, snapshot.taken, ""

    def health(self) -> dict[str, Any]:
        """The endpoint's health for the status page and metrics (times are epoch seconds).

        ``endpoint`` is its readable name, ``id`` what tells it from others.
        """
        now = self.clock()
        snapshot = self._snapshot
        age = None if snapshot is None else now - snapshot.taken
        return {
            "kind": self.kind,
            "plugin": getattr(self.plugin, "name", type(self.plugin).__name__),
            "endpoint": self.name,
            "id": self.endpoint,
            "queues": sorted(self.queues),
            "calls": self.calls,
            "consecutive_failures": self.failures,
            "failures_total": self.failures_total,
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
            "last_success": self.last_success,
            "last_attempt": self.last_attempt,
            "last_duration": self.last_duration,
            "in_call_since": self._caller.in_call_since,
            "abandoned_calls": self._caller.abandoned,
            "breaker": self.breaker,
            "breaker_until": self.breaker_until,
            "breaker_opened": self.breaker_opened,
            "sleep": self.sleep,
            "maxage": self.maxage,
            "age": age,
            "healthy": age is not None and age <= self.maxage,
        }


class StatusService:
    """Makes and owns the pollers: one per (kind, endpoint)."""

    def __init__(self, context: FactoryContext):
        self.context = context
        self.pollers: dict[tuple[str, str], StatusPoller] = {}
        self._lock = threading.Lock()
        self._deferred: list[StatusPoller] | None = None

    @contextlib.contextmanager
    def deferred_start(self) -> Iterator[None]:
        """Pollers made inside the block start when it ends.

        The factory registers all its queues first, so the first query of each
        endpoint already covers every queue of it: one query at start, not one
        more for each queue added while a query runs (with 2,000 queues, a
        Slurm listing of 200,000 pilots was parsed again and again).
        """
        with self._lock:
            self._deferred = []
        try:
            yield
        finally:
            with self._lock:
                pending, self._deferred = self._deferred or [], None
            for poller in pending:
                poller.start()

    def poller_for(self, kind: str, queue: QueueConfig) -> StatusPoller:
        """The poller serving this queue for ``kind`` (wmsstatus or batchstatus)."""
        plugin_cls = self.context.registry.get(kind, queue.values[f"{kind}plugin"])
        options = queue.plugin_options(plugin_cls)
        endpoint = plugin_cls.endpoint(options)
        with self._lock:
            poller = self.pollers.get((kind, endpoint))
            if poller is None:
                plugin = plugin_cls(options, self.context)
                sleep, maxage = self.context.config.status_timing(kind, plugin_cls)
                failures, cooldown = self.breaker_settings(kind, plugin_cls)
                poller = StatusPoller(kind, plugin, endpoint, sleep, maxage, failures, cooldown,
                                      name=self._unique_name(kind, plugin_cls.endpoint_name(options)))
                self.pollers[(kind, endpoint)] = poller
                if self._deferred is not None:
                    self._deferred.append(poller)
                else:
                    poller.start()
        poller.add_queue(plugin_cls.queue_key(queue))
        return poller

    def _unique_name(self, kind: str, name: str) -> str:
        """``name``, or ``name #2``… when another endpoint of this kind has it (two proxies, one URL)."""
        taken = {p.name for (k, _), p in self.pollers.items() if k == kind}
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name} #{n}"
        return unique

    def breaker_settings(self, kind: str, plugin_cls: type) -> tuple[int, float | None]:
        """([Factory] <kind>.<plugin>.breakerfailures, .breakercooldown); None = twice ``sleep``."""
        values = self.context.config.factory.values
        prefix = plugin_cls.key_prefix()
        failures = values.get(f"{prefix}breakerfailures") or DEFAULT_BREAKER_FAILURES
        return int(failures), values.get(f"{prefix}breakercooldown")

    def release(self, kind: str, queue: QueueConfig, remaining: Iterable[QueueConfig]) -> None:
        """A queue stops using its poller (unless a ``remaining`` queue asks for the same); a poller nobody uses stops."""
        plugin_cls = self.context.registry.get(kind, queue.values[f"{kind}plugin"])
        key = plugin_cls.queue_key(queue)
        still_used = {plugin_cls.queue_key(other) for other in remaining}
        with self._lock:
            for (k, endpoint), poller in list(self.pollers.items()):
                if k == kind and key in poller.queues and key not in still_used:
                    poller.remove_queue(key)
                    if not poller.queues:
                        poller.stop()
                        del self.pollers[(k, endpoint)]

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            pollers = list(self.pollers.values())
            self.pollers.clear()
        for poller in pollers:
            poller.stop()
        deadline = time.time() + timeout
        for poller in pollers:
            poller.join(max(0.0, deadline - time.time()))

    def health(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p.health() for p in self.pollers.values()]
