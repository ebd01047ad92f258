"""Monitor plugin Dummy: a monitor that does nothing (APF 2.4's ``monitorplugin = Dummy``)."""

from __future__ import annotations

from autopyfactory.config import QueueConfig
from autopyfactory.interfaces import MonitorPlugin
from autopyfactory.records import CycleRecord


class Dummy(MonitorPlugin):
    """Reports nothing anywhere: a monitor section a queue can name to have none. Keys: none."""

    name = "Dummy"

    def cycle_done(self, queue: QueueConfig, record: CycleRecord) -> None:
        return None
