"""Shared status: one poller thread per endpoint, whatever the number of queues.

A poller asks its plugin for the status of every queue interested in it,
every ``sleep`` seconds, and keeps the last good answer with the time the
query *started* (so the answer is known to include everything submitted
before that moment). A queue asking for its numbers gets ``None`` (unknown)
when there is no answer yet, when the last good answer is older than
``maxage``, or when the answer does not mention it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from autopyfactory.config import QueueConfig
from autopyfactory.context import FactoryContext
from autopyfactory.interfaces import StatusPlugin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    data: dict[str, Any]
    taken: float  # when the query started (epoch seconds)


class StatusPoller:
    """Polls one status plugin instance (one endpoint) from its own thread."""

    def __init__(self, kind: str, plugin: StatusPlugin, endpoint: str, sleep: float, maxage: float):
        self.kind = kind
        self.plugin = plugin
        self.endpoint = endpoint
        self.sleep = sleep
        self.maxage = maxage
        self.calls = 0
        self.failures = 0  # consecutive
        self.last_error: str | None = None
        self.last_success: float | None = None
        self._snapshot: Snapshot | None = None
        self._queues: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
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
        """Ask for a query now (e.g. right after a submission)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self.poll_once()
            self._wake.wait(self._next_wait())

    def _next_wait(self) -> float:
        if self.failures == 0:
            return self.sleep
        # retry sooner after a failure, backing off up to the normal interval
        return min(self.sleep, 2.0 ** min(self.failures, 10))

    def poll_once(self) -> None:
        queues = self.queues
        if not queues:
            return
        started = time.time()
        self.calls += 1
        try:
            data = self.plugin.poll(queues)
            if not isinstance(data, dict):
                raise TypeError(f"poll() returned {type(data).__name__}, not a dict")
        except Exception as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s status from %s failed (%d in a row): %s",
                        self.kind, self.endpoint, self.failures, self.last_error)
            return
        with self._lock:
            self._snapshot = Snapshot(data, started)
        self.failures = 0
        self.last_error = None
        self.last_success = started

    # -- reading
    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def get(self, key: str, now: float | None = None) -> tuple[Any, float | None, str]:
        """(info or None, time the answer was taken, why it is unknown)."""
        now = time.time() if now is None else now
        snapshot = self._snapshot
        error = f"; last error: {self.last_error}" if self.last_error else ""
        if snapshot is None:
            return None, None, f"no answer yet from {self.endpoint}{error}"
        age = now - snapshot.taken
        if age > self.maxage:
            return None, snapshot.taken, (
                f"answer from {self.endpoint} is {age:.0f}s old (maxage {self.maxage:g}s){error}"
            )
        info = snapshot.data.get(key)
        if info is None:
            return None, snapshot.taken, f"{self.endpoint} reports nothing for {key}"
        return info, snapshot.taken, ""

    def health(self) -> dict[str, Any]:
        snapshot = self._snapshot
        return {
            "kind": self.kind,
            "endpoint": self.endpoint,
            "queues": sorted(self.queues),
            "calls": self.calls,
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
            "last_success": self.last_success,
            "age": None if snapshot is None else time.time() - snapshot.taken,
            "healthy": snapshot is not None and time.time() - snapshot.taken <= self.maxage,
        }


class StatusService:
    """Makes and owns the pollers: one per (kind, endpoint)."""

    def __init__(self, context: FactoryContext):
        self.context = context
        self.pollers: dict[tuple[str, str], StatusPoller] = {}
        self._lock = threading.Lock()

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
                poller = StatusPoller(kind, plugin, endpoint, sleep, maxage)
                self.pollers[(kind, endpoint)] = poller
                poller.start()
        poller.add_queue(queue.wmsqueue if kind == "wmsstatus" else queue.name)
        return poller

    def release(self, kind: str, queue: QueueConfig, still_used: set[str]) -> None:
        """A queue stops using its poller; a poller nobody uses stops."""
        key = queue.wmsqueue if kind == "wmsstatus" else queue.name
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
