"""Monitor plugin that writes monitor events to the factory log."""

from __future__ import annotations

import logging

from autopyfactory.config import QueueConfig
from autopyfactory.interfaces import MonitorPlugin
from autopyfactory.records import CycleRecord

log = logging.getLogger("autopyfactory.monitor")


class Log(MonitorPlugin):
    """Logs each cycle's submissions and last message. Keys: none."""

    name = "Log"

    def start(self) -> None:
        log.info("monitor %s: factory %s registered", self.section.name, self.context.factory_id)

    def cycle_done(self, queue: QueueConfig, record: CycleRecord) -> None:
        if record.ids:
            log.info("monitor %s: %s jobs %s", self.section.name, queue.name, ",".join(record.ids))
        log.info("monitor %s: %s status: %s", self.section.name, queue.name, record.message)
