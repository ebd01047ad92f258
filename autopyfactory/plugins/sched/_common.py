"""What the built-in scheduler plugins share (not a plugin module: its name starts with ``_``).

Unknown is not zero. A step that reads the cycle's status (``StatusStep``)
hands on 0 when the WMS or batch status is unknown, and says so; it never
asks for a removal on unknown status. A step that reads no status (Fixed,
Scale, MinPerCycle, MaxPerCycle, Throttle, Null) applies its formula. The
queue cycle then submits and removes nothing while either status is unknown,
whatever the chain said, and gives the reason (queue.py).
"""

from __future__ import annotations

from abc import abstractmethod

from autopyfactory.info import BatchQueueInfo, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo, SchedulerPlugin


def unknown_status(info: SchedInfo) -> str | None:
    """Why the cycle's status is unknown, or None when both sides are known."""
    if info.wms is None and info.batch is None:
        return "WMS and batch status unknown"
    if info.wms is None:
        return "WMS status unknown"
    if info.batch is None:
        return "batch status unknown"
    return None


def removal(n: int) -> str:
    """Suffix that spells out what a negative number asks for."""
    return f": remove {-n} idle" if n < 0 else ""


class StatusStep(SchedulerPlugin):
    """A step that needs known WMS and batch status; with either unknown it hands on 0."""

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        why = unknown_status(info)
        if why is not None:
            return 0, f"{self.name}: {why}, 0"
        assert info.wms is not None and info.batch is not None
        return self.compute(n, info.wms, info.batch, info)

    @abstractmethod
    def compute(self, n: int, wms: WMSQueueInfo, batch: BatchQueueInfo, info: SchedInfo) -> tuple[int, str]:
        """``calc`` with both sides of the status known."""
