"""Building scheduler plugins and their inputs for tests, without a config file."""

from __future__ import annotations

from autopyfactory.config import QueueConfig, Section
from autopyfactory.info import BatchQueueInfo, FinishedPilot, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo, SchedulerPlugin

UNKNOWN = object()


def _builtins() -> list[type[SchedulerPlugin]]:
    from autopyfactory.plugins.sched import backlog, builtin, limits, nqueue, queuestatus, throttle

    return [
        builtin.Ready, builtin.Fixed, builtin.Scale, limits.MinPerCycle, limits.MaxPerCycle, limits.MaxPending,
        limits.MinPending, limits.MaxToRun, limits.MaxPerFactory, limits.KeepNRunning, queuestatus.StatusTest,
        queuestatus.StatusOffline, throttle.Throttle, builtin.Null, backlog.Backlog, nqueue.NQueue,
    ]


ALL = _builtins()  # every built-in scheduler plugin (docs/schedulers.md), in its order, then Backlog, NQueue


def make(cls: type[SchedulerPlugin], factory: dict | None = None, **params) -> SchedulerPlugin:
    """A plugin of ``cls`` with ``sched.<name>.<param>`` set from ``params`` (None = not set)."""
    values = {f"sched.{cls.name.lower()}.{k}": v for k, v in params.items() if v is not None}
    queue = QueueConfig("TESTQ", "queues.conf", values)
    return cls(queue, Section("Factory", "factory.conf", dict(factory or {})))


def status(
    ready: int | object = 0,
    pending: int | object = 0,
    running: int = 0,
    wms_status: str = "online",
    factory_pilots: int | None = None,
    finished: list[FinishedPilot] | None = None,
    now: float = 1_000_000.0,
) -> SchedInfo:
    """SchedInfo; ``ready=UNKNOWN`` / ``pending=UNKNOWN`` make that side unknown."""
    wms = None if ready is UNKNOWN else WMSQueueInfo(ready=ready, status=wms_status)
    batch = None if pending is UNKNOWN else BatchQueueInfo(pending=pending, running=running)
    return SchedInfo(wms=wms, batch=batch, factory_pilots=factory_pilots, now=now, finished=finished or [])


def queue_text(name: str, spool, schedplugin: str = "Ready", **keys: str) -> str:
    """The conftest Local queue section with its own ``schedplugin`` and extra keys."""
    from tests.conftest import local_queue

    return local_queue(name, spool, schedplugin=schedplugin, **keys)
