"""Built-in scheduler plugins (APF 2.4 semantics, see docs/schedulers.md)."""

from __future__ import annotations

from autopyfactory.config import Key
from autopyfactory.interfaces import SchedInfo, SchedulerPlugin


class Ready(SchedulerPlugin):
    """Pilots for the work that is ready and not yet covered by pending pilots.

    Keys: ``sched.ready.offset`` (0). Output: ``max(0, (ready - offset) - pending)``;
    0 when WMS or batch status is unknown.
    """

    name = "Ready"
    keys = {"offset": Key("int", 0, help="ready jobs to leave alone")}

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        if info.wms is None or info.batch is None:
            which = "WMS" if info.wms is None else "batch"
            return 0, f"Ready: {which} status unknown, 0"
        ready, pending = info.wms.ready, info.batch.pending
        out = max(0, ready - self.options["offset"] - pending)
        return out, f"Ready: {out} ({ready} ready - {self.options['offset']} offset - {pending} pending)"


class Fixed(SchedulerPlugin):
    """A constant. Keys: ``sched.fixed.pilotspercycle`` (0)."""

    name = "Fixed"
    keys = {"pilotspercycle": Key("int", 0, min=0)}

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        out = self.options["pilotspercycle"]
        return out, f"Fixed: {out}"


class MaxPerCycle(SchedulerPlugin):
    """Cap per cycle. Keys: ``sched.maxpercycle.maximum``. Output: ``min(n, maximum)``."""

    name = "MaxPerCycle"
    keys = {"maximum": Key("int", None, min=0)}

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        maximum = self.options["maximum"]
        if maximum is None or n <= maximum:
            return n, ""
        return maximum, f"MaxPerCycle: {n} capped to {maximum}"


class Null(SchedulerPlugin):
    """Always 0."""

    name = "Null"

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        return 0, "Null: 0"
