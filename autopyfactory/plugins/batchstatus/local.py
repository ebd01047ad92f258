"""Status of the pilots the Local batch system runs as local processes."""

from __future__ import annotations

from collections.abc import Collection

from autopyfactory.info import BatchQueueInfo, LivePilot
from autopyfactory.interfaces import BatchStatusPlugin
from autopyfactory.localbatch import LocalBatch


class Local(BatchStatusPlugin):
    """Pending/running/done/fault counts of local pilots, per queue.

    Keys: none. done and fault cover the last hour; ``finished`` carries each
    ended pilot's start, end and exit code (for Throttle).
    """

    name = "Local"
    default_sleep = 5.0
    default_maxage = 60.0

    def poll(self, queues: Collection[str]) -> dict[str, BatchQueueInfo]:
        batch = self.context.shared("localbatch", LocalBatch)
        return batch.status(queues, self.context.factory_id)

    def list_pilots(self, queue: str) -> list[LivePilot]:
        return self.context.shared("localbatch", LocalBatch).pilots(queue, self.context.factory_id)
