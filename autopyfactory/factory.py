"""The factory: queues, shared status, credentials and other services in one process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from autopyfactory import __version__, services
from autopyfactory.config import FactoryConfig
from autopyfactory.context import FactoryContext
from autopyfactory.credentials import CredentialService
from autopyfactory.interfaces import MonitorPlugin
from autopyfactory.plugins.registry import PluginRegistry
from autopyfactory.queue import APFQueue, FactoryPilots
from autopyfactory.records import CycleRecord
from autopyfactory.status import StatusService

log = logging.getLogger(__name__)


class Factory:
    def __init__(self, config: FactoryConfig, registry: PluginRegistry):
        self.config = config
        self.registry = registry
        self.started = time.time()
        self.version = __version__
        self.context = FactoryContext(config, registry)
        self.credentials = CredentialService(self.context)
        self.context.credentials = self.credentials
        self.status = StatusService(self.context)
        self.pilots = FactoryPilots(config.get("maxperfactory.maximum"))
        self.monitors: dict[str, MonitorPlugin] = {
            name: registry.get("monitor", section.get("monitorplugin"))(section, self.context)
            for name, section in config.monitor.items()
        }
        self.queues: dict[str, APFQueue] = {}
        # called after every cycle of every queue: (queue, record)
        self.listeners: list[Callable[[APFQueue, CycleRecord], None]] = [self._tell_monitors]
        # services with start()/stop() running beside the queues (web server, log cleaner, ...)
        self.services: list = services.build(self)
        self._stopping = threading.Event()

    # ------------------------------------------------------------ life cycle
    def start(self, cycles: int | None = None) -> None:
        self.credentials.start()
        for monitor in self.monitors.values():
            monitor.start()
        for service in self.services:
            service.start()
        for qconfig in self.config.enabled_queues.values():
            self.start_queue(qconfig, cycles)
        if not self.queues:
            log.warning("no enabled queues (enablequeues=%s)", self.config.get("enablequeues"))
        log.info("factory %s %s started with %d queue(s): %s", self.config.factory_id,
                 self.version, len(self.queues), ", ".join(self.queues) or "-")

    def start_queue(self, qconfig, cycles: int | None = None) -> APFQueue:
        queue = APFQueue(qconfig, self.context, self.status, self.pilots, self.listeners)
        self.queues[queue.name] = queue
        queue.start(cycles)
        return queue

    def stop_queue(self, name: str, timeout: float = 10.0) -> None:
        queue = self.queues.pop(name)
        queue.stop()
        queue.join(timeout)
        self.pilots.remove(name)
        still = {q.config.wmsqueue for q in self.queues.values()}
        self.status.release("wmsstatus", queue.config, still)
        self.status.release("batchstatus", queue.config, set(self.queues))

    def wait(self) -> None:
        """Until stop() is called, or every queue has run its --cycles."""
        while not self._stopping.is_set():
            if self.queues and not any(q.alive for q in self.queues.values()):
                return
            self._stopping.wait(0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every thread; a cycle under way finishes its submission first."""
        self._stopping.set()
        for queue in self.queues.values():
            queue.stop()
        deadline = time.time() + timeout
        for queue in self.queues.values():
            queue.join(max(0.1, deadline - time.time()))
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception:
                log.exception("stopping %s failed", service)
        self.status.stop(max(0.1, deadline - time.time()))
        self.credentials.stop()
        for monitor in self.monitors.values():
            monitor.stop()
        self.context.close()
        log.info("factory %s stopped", self.config.factory_id)

    def request_stop(self) -> None:
        self._stopping.set()

    # ------------------------------------------------------------ hooks
    def _tell_monitors(self, queue: APFQueue, record: CycleRecord) -> None:
        for section in queue.config.values.get("monitorsection", []):
            monitor = self.monitors.get(section)
            if monitor is not None:
                monitor.cycle_done(queue.config, record)

    def summary(self) -> dict:
        last = max((q.records[0].started for q in self.queues.values() if q.records), default=None)
        return {
            "factoryId": self.config.factory_id,
            "version": self.version,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "last_cycle": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)) if last else None,
            "queues": len(self.queues),
        }
