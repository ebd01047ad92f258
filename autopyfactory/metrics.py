"""Prometheus metrics of one factory, read from its live state at scrape time.

Each factory gets its own CollectorRegistry (several factories in one
process, as in the tests, never clash). Counters are the queues' own
counters; a queue started again after a reload starts from zero, which
Prometheus reads as a counter reset. Cycle durations are a histogram fed by
a cycle listener (``CycleDurations.cycle_done``). docs/web.md lists every
metric; tests/test_metrics.py checks them with ``promtool check metrics``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from autopyfactory.health import LEVELS, idle_health
from autopyfactory.info import WMSQueueInfo
from autopyfactory.redact import redact
from autopyfactory.status import BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN

if TYPE_CHECKING:
    from autopyfactory.queue import APFQueue
    from autopyfactory.records import CycleRecord
    from autopyfactory.view import FactoryView

PILOT_STATES = ("pending", "running", "exiting", "held")  # pilots in the batch system now
FINISHED_RESULTS = ("done", "fault", "empty")  # pilots that ended in the last hour (empty: found no work)
WMS_STATES = ("notready", "ready", "running", "done", "failed")
BREAKER_STATES = (BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN)
# a cycle takes milliseconds (Local) to a minute (a slow schedd)
CYCLE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, math.inf)


class CycleDurations:
    """Cumulative histogram of cycle durations per queue, since the factory started."""

    def __init__(self, buckets: tuple[float, ...] = CYCLE_BUCKETS):
        self.buckets = buckets
        self._lock = threading.Lock()
        self._queues: dict[str, tuple[list[int], list[float]]] = {}  # name -> (count per bucket, [sum])

    def cycle_done(self, queue: APFQueue, record: CycleRecord) -> None:
        """Factory cycle listener."""
        self.observe(queue.name, record.duration)

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            counts, total = self._queues.setdefault(name, ([0] * len(self.buckets), [0.0]))
            counts[next(i for i, le in enumerate(self.buckets) if seconds <= le)] += 1
            total[0] += seconds

    def metric(self, names: Iterable[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily("apf_cycle_duration_seconds", "Duration of a queue's cycles",
                                       labels=["queue"])
        with self._lock:
            for name in names:
                counts, total = self._queues.get(name, ([0] * len(self.buckets), [0.0]))
                cumulative, buckets = 0, []
                for le, count in zip(self.buckets, counts, strict=True):
                    cumulative += count
                    buckets.append(("+Inf" if le == math.inf else repr(le), cumulative))
                family.add_metric([name], buckets, total[0])
        return family


class FactoryCollector(Collector):
    def __init__(self, factory: FactoryView, durations: CycleDurations):
        self.factory = factory
        self.durations = durations

    def collect(self) -> Iterator[Metric]:
        factory = self.factory
        info = GaugeMetricFamily("apf_factory_info", "This factory (value 1)", labels=["factory", "version"])
        info.add_metric([factory.config.factory_id, factory.version], 1)
        yield info
        start = GaugeMetricFamily("apf_factory_start_time_seconds", "When the factory started (Unix time)")
        start.add_metric([], factory.started)
        yield start
        yield from self.reload_metrics()
        queues = sorted(factory.queues.values(), key=lambda q: q.name)
        yield from self.queue_metrics(queues)
        yield self.durations.metric(q.name for q in queues)
        yield from self.credential_metrics()
        yield from self.endpoint_metrics()

    def reload_metrics(self) -> Iterator[Metric]:
        last = getattr(self.factory, "last_reload", None)
        when = GaugeMetricFamily("apf_last_reload_timestamp_seconds",
                                 "When the configuration was last reloaded (Unix time); absent before the first")
        ok = GaugeMetricFamily("apf_last_reload_success", "1 if the last reload was applied, 0 if it was rejected")
        if last:
            when.add_metric([], last["time"])
            ok.add_metric([], 1 if last.get("ok") else 0)
        yield when
        yield ok

    def queue_metrics(self, queues: list[APFQueue]) -> Iterator[Metric]:
        pilots = GaugeMetricFamily("apf_queue_pilots", "Pilots of a queue in the batch system by state; "
                                   "absent while the batch status is unknown", labels=["queue", "state"])
        finished = GaugeMetricFamily("apf_queue_pilots_finished", "Pilots of a queue that ended in the last hour, "
                                     "by result (done, fault, empty: found no work); absent when unknown", labels=["queue", "result"])
        wms = GaugeMetricFamily("apf_wms_jobs", "Jobs of the queue's WMS queue by WMS state (ready: activated); "
                                "absent while the WMS status is unknown", labels=["queue", "state"])
        health = GaugeMetricFamily("apf_queue_health", "1 for the queue's health level, 0 for the others",
                                   labels=["queue", "level"])
        paused = GaugeMetricFamily("apf_queue_paused", "1 while an operator has paused or drained the queue",
                                   labels=["queue"])
        submitted = CounterMetricFamily("apf_submitted", "Pilots submitted by a queue", labels=["queue"])
        cycles = CounterMetricFamily("apf_cycles", "Cycles run by a queue", labels=["queue"])
        errors = CounterMetricFamily("apf_cycle_errors", "Cycles of a queue that ended with an error",
                                     labels=["queue"])
        last = GaugeMetricFamily("apf_queue_last_cycle_timestamp_seconds",
                                 "When the queue's last cycle started (Unix time)", labels=["queue"])
        hour_ago = time.time() - 3600
        for queue in queues:
            name = queue.name
            batch, _, _ = queue.batch_status()
            if batch is not None:
                for state in PILOT_STATES:
                    pilots.add_metric([name, state], getattr(batch, state))
            counts = queue.finished_counts(hour_ago)
            if counts is not None:
                for result in FINISHED_RESULTS:
                    finished.add_metric([name, result], counts.get(result, 0))
            jobs, _, _ = queue.wms_poller.get(queue.config.wmsqueue)
            if isinstance(jobs, WMSQueueInfo):
                for state in WMS_STATES:
                    wms.add_metric([name, state], getattr(jobs, state))
            level = queue.health().level
            for each in LEVELS:
                health.add_metric([name, each], 1 if each == level else 0)
            paused.add_metric([name], 1 if queue.paused else 0)
            submitted.add_metric([name], queue.submitted_total)
            cycles.add_metric([name], queue.cycles)
            errors.add_metric([name], queue.errors_total)
            record = queue.last_record
            if record is not None:
                last.add_metric([name], record.started)
        config = self.factory.config
        for name in sorted(set(config.queues) - {q.name for q in queues}):  # not running
            level = idle_health(config, config.queues[name]).level
            for each in LEVELS:
                health.add_metric([name, each], 1 if each == level else 0)
        yield from (pilots, finished, wms, health, paused, submitted, cycles, errors, last)

    def credential_metrics(self) -> Iterator[Metric]:
        seconds_left = GaugeMetricFamily("apf_credential_seconds_left", "Lifetime left of a credential profile",
                                         labels=["profile"])
        usable = GaugeMetricFamily("apf_credential_ok", "1 if the credential profile is usable", labels=["profile"])
        for profile, state in sorted(self.factory.credentials.all_status().items()):
            usable.add_metric([profile], 1 if state is not None and state.ok else 0)
            if state is not None and state.seconds_left is not None:
                seconds_left.add_metric([profile], max(0.0, state.seconds_left))
        yield seconds_left
        yield usable

    def endpoint_metrics(self) -> Iterator[Metric]:
        labels = ["kind", "endpoint"]
        up = GaugeMetricFamily("apf_endpoint_up", "1 if the endpoint's last good answer is fresh (within maxage)",
                               labels=labels)
        age = GaugeMetricFamily("apf_endpoint_answer_age_seconds", "Age of the endpoint's last good answer",
                                labels=labels)
        failing = GaugeMetricFamily("apf_endpoint_consecutive_failures", "Failed queries of the endpoint in a row",
                                    labels=labels)
        failures = CounterMetricFamily("apf_endpoint_failures", "Failed queries of the endpoint", labels=labels)
        breaker = GaugeMetricFamily("apf_endpoint_breaker_state",
                                    "1 for the state of the endpoint's circuit breaker, 0 for the others",
                                    labels=[*labels, "state"])
        for health in sorted(self.factory.status.health(), key=lambda h: (h["kind"], h["endpoint"])):
            names = [health["kind"], redact(health["endpoint"])]  # a URL may hold a password or token
            up.add_metric(names, 1 if health["healthy"] else 0)
            if health["age"] is not None:
                age.add_metric(names, health["age"])
            failing.add_metric(names, health["consecutive_failures"])
            failures.add_metric(names, health["failures_total"])
            for state in BREAKER_STATES:
                breaker.add_metric([*names, state], 1 if health["breaker"] == state else 0)
        yield from (up, age, failing, failures, breaker)


def factory_registry(factory: FactoryView, durations: CycleDurations) -> CollectorRegistry:
    """The factory's metrics and the process's own (CPU, memory, open files: ``process_*``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FactoryCollector(factory, durations))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
