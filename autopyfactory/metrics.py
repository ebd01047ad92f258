"""Prometheus metrics of one factory, read from its live state at scrape time.

Each factory gets its own CollectorRegistry (several factories in one
process, as in the tests, never clash). Counters are the queues' own
counters; a queue started again after a reload starts from zero, which
Prometheus reads as a counter reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from autopyfactory.view import FactoryView

PILOT_STATES = ("pending", "running", "exiting", "held", "done", "fault")


class FactoryCollector(Collector):
    def __init__(self, factory: FactoryView):
        self.factory = factory

    def collect(self) -> Iterator[Metric]:
        factory = self.factory
        queues = list(factory.queues.values())

        info = GaugeMetricFamily("apf_factory_info", "This factory (value 1)", labels=["factory", "version"])
        info.add_metric([factory.config.factory_id, factory.version], 1)
        yield info
        start = GaugeMetricFamily("apf_factory_start_time_seconds", "When the factory started (epoch)")
        start.add_metric([], factory.started)
        yield start

        pilots = GaugeMetricFamily(
            "apf_queue_pilots",
            "Pilots of a queue in the batch system by state (done/fault: recently finished); "
            "absent while the batch status is unknown",
            labels=["queue", "state"],
        )
        submitted = CounterMetricFamily("apf_submitted", "Pilots submitted by a queue", labels=["queue"])
        cycles = CounterMetricFamily("apf_cycles", "Cycles run by a queue", labels=["queue"])
        errors = CounterMetricFamily("apf_cycle_errors", "Cycles of a queue that ended with an error",
                                     labels=["queue"])
        duration = GaugeMetricFamily("apf_cycle_duration_seconds", "Duration of the queue's last cycle",
                                     labels=["queue"])
        last = GaugeMetricFamily("apf_last_cycle_time_seconds", "When the queue's last cycle started (epoch)",
                                 labels=["queue"])
        paused = GaugeMetricFamily("apf_queue_paused", "1 while the queue is paused by an operator",
                                   labels=["queue"])
        for queue in queues:
            batch, _, _ = queue.batch_status()
            if batch is not None:
                for state in PILOT_STATES:
                    pilots.add_metric([queue.name, state], getattr(batch, state))
            submitted.add_metric([queue.name], queue.submitted_total)
            cycles.add_metric([queue.name], queue.cycles)
            errors.add_metric([queue.name], queue.errors_total)
            paused.add_metric([queue.name], 1 if queue.paused else 0)
            record = queue.last_record
            if record is not None:
                duration.add_metric([queue.name], record.duration)
                last.add_metric([queue.name], record.started)
        yield from (pilots, submitted, cycles, errors, duration, last, paused)

        seconds_left = GaugeMetricFamily("apf_credential_seconds_left",
                                         "Lifetime left of a credential profile", labels=["profile"])
        usable = GaugeMetricFamily("apf_credential_ok", "1 if the credential profile is usable",
                                   labels=["profile"])
        for profile, state in factory.credentials.all_status().items():
            usable.add_metric([profile], 1 if state is not None and state.ok else 0)
            if state is not None and state.seconds_left is not None:
                seconds_left.add_metric([profile], max(0.0, state.seconds_left))
        yield seconds_left
        yield usable

        healthy = GaugeMetricFamily("apf_status_healthy", "1 if the endpoint's last answer is fresh",
                                    labels=["kind", "endpoint"])
        age = GaugeMetricFamily("apf_status_age_seconds", "Age of the endpoint's last good answer",
                                labels=["kind", "endpoint"])
        for health in factory.status.health():
            labels = [health["kind"], health["endpoint"]]
            healthy.add_metric(labels, 1 if health["healthy"] else 0)
            if health["age"] is not None:
                age.add_metric(labels, health["age"])
        yield healthy
        yield age


def factory_registry(factory: FactoryView) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FactoryCollector(factory))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
