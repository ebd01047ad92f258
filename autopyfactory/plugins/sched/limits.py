"""Built-in scheduler plugins that cap or raise the number handed on.

A key left unset makes its step a no-op that says so (APF 2.4 behaviour).
Steps that read status hand on 0 when it is unknown; see ``_common.py``. Semantics and examples:
docs/schedulers.md.
"""

from __future__ import annotations

from autopyfactory.config import Key
from autopyfactory.info import BatchQueueInfo, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo, SchedulerPlugin
from autopyfactory.plugins.sched._common import StatusStep, removal


def capped(name: str, n: int, limit: int, expr: str) -> tuple[int, str]:
    """``min(n, limit)`` with the message: ``Name: 12 capped to 3 (10 max - 7 pending)``."""
    out = min(n, limit)
    if out < n:
        return out, f"{name}: {n} capped to {out} ({expr}){removal(out)}"
    return out, f"{name}: {n}, within {limit} ({expr}){removal(out)}"


def raised(name: str, n: int, floor: int, expr: str) -> tuple[int, str]:
    """``max(n, floor)`` with the message: ``Name: 0 raised to 3 (5 min - 2 pending)``."""
    out = max(n, floor)
    if out > n:
        return out, f"{name}: {n} raised to {out} ({expr})"
    return out, f"{name}: {n}, at least {floor} ({expr}){removal(out)}"


def not_set(name: str, n: int, key: str) -> tuple[int, str]:
    return n, f"{name}: {n} unchanged ({key} not set)"


class MinPerCycle(SchedulerPlugin):
    """A floor on the pilots of one cycle.

    Keys: ``sched.minpercycle.minimum`` (unset: no-op, at least 0).
    Output: ``max(n, minimum)`` (reads no status; the queue submits nothing
    while status is unknown).
    """

    name = "MinPerCycle"
    keys = {"minimum": Key("int", None, min=0, help="submit at least this many pilots every cycle")}

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        minimum = self.options["minimum"]
        if minimum is None:
            return not_set(self.name, n, "sched.minpercycle.minimum")
        return raised(self.name, n, minimum, f"{minimum} min")


class MaxPerCycle(SchedulerPlugin):
    """A cap on the pilots submitted in one cycle.

    Keys: ``sched.maxpercycle.maximum`` (unset: no-op, at least 0).
    Output: ``min(n, maximum)``; a removal (negative n) passes unchanged.
    The queue applies the same maximum again after the chain as a hard ceiling.
    """

    name = "MaxPerCycle"
    keys = {"maximum": Key("int", None, min=0, help="submit at most this many pilots per cycle")}

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        maximum = self.options["maximum"]
        if maximum is None:
            return not_set(self.name, n, "sched.maxpercycle.maximum")
        return capped(self.name, n, maximum, f"{maximum} max")


class MaxPending(StatusStep):
    """A cap on the pilots waiting in the batch queue.

    Keys: ``sched.maxpending.maximum`` (unset: no-op, at least 0).
    Output: ``min(n, maximum - pending)``, also when nothing is pending (APF
    2.4 skipped the cap then); negative when more than ``maximum`` are
    pending: remove that many idle pilots. 0 when status is unknown.
    """

    name = "MaxPending"
    keys = {"maximum": Key("int", None, min=0, help="at most this many pilots pending in the batch queue")}

    def compute(self, n: int, wms: WMSQueueInfo, batch: BatchQueueInfo, info: SchedInfo) -> tuple[int, str]:
        maximum = self.options["maximum"]
        if maximum is None:
            return not_set(self.name, n, "sched.maxpending.maximum")
        return capped(self.name, n, maximum - batch.pending, f"{maximum} max - {batch.pending} pending")


class MinPending(StatusStep):
    """A floor on the pilots waiting in the batch queue (keeps a queue warm).

    Keys: ``sched.minpending.minimum`` (unset: no-op, at least 0).
    Output: ``max(n, minimum - pending)``; 0 when status is unknown.
    """

    name = "MinPending"
    keys = {"minimum": Key("int", None, min=0, help="at least this many pilots pending in the batch queue")}

    def compute(self, n: int, wms: WMSQueueInfo, batch: BatchQueueInfo, info: SchedInfo) -> tuple[int, str]:
        minimum = self.options["minimum"]
        if minimum is None:
            return not_set(self.name, n, "sched.minpending.minimum")
        return raised(self.name, n, minimum - batch.pending, f"{minimum} min - {batch.pending} pending")


class MaxToRun(StatusStep):
    """A cap on this queue's pilots in the batch system, pending and running together.

    Keys: ``sched.maxtorun.maximum`` (unset: no-op, at least 0).
    Output: ``min(n, maximum - (pending + running))``; negative when over:
    remove that many idle pilots. 0 when status is unknown.
    """

    name = "MaxToRun"
    keys = {"maximum": Key("int", None, min=0, help="at most this many pilots pending + running")}

    def compute(self, n: int, wms: WMSQueueInfo, batch: BatchQueueInfo, info: SchedInfo) -> tuple[int, str]:
        maximum = self.options["maximum"]
        if maximum is None:
            return not_set(self.name, n, "sched.maxtorun.maximum")
        limit = maximum - (batch.pending + batch.running)
        return capped(self.name, n, limit, f"{maximum} max - {batch.pending} pending - {batch.running} running")


class MaxPerFactory(StatusStep):
    """A cap on the pilots of the whole factory, every queue together.

    Keys: ``[Factory] maxperfactory.maximum`` (unset: no-op).
    Output: ``min(n, maximum - factory-wide (pending + running))``, never
    below 0 on its own account: every queue sees the same factory-wide excess,
    and each removing all of it would remove it many times over. 0 when the
    factory-wide count or this queue's status is unknown. The queue applies
    the same maximum again after the chain as a hard ceiling.
    """

    name = "MaxPerFactory"

    def compute(self, n: int, wms: WMSQueueInfo, batch: BatchQueueInfo, info: SchedInfo) -> tuple[int, str]:
        maximum = self.factory.get("maxperfactory.maximum", None)
        if maximum is None:
            return not_set(self.name, n, "[Factory] maxperfactory.maximum")
        total = info.factory_pilots
        if total is None:
            return 0, f"{self.name}: factory-wide pilot count unknown, 0"
        return capped(self.name, n, max(0, maximum - total), f"{maximum} max - {total} in the factory")


class KeepNRunning(StatusStep):
    """Keep a fixed number of pilots in the batch system, whatever it is handed.

    Keys: ``sched.keepnrunning.keep_running`` (unset: no-op, at least 0).
    Output: ``keep_running - (pending + running)``; negative when over:
    remove that many idle pilots (a running pilot is never removed).
    0 when status is unknown.
    """

    name = "KeepNRunning"
    keys = {"keep_running": Key("int", None, min=0, help="pilots to keep pending + running")}

    def compute(self, n: int, wms: WMSQueueInfo, batch: BatchQueueInfo, info: SchedInfo) -> tuple[int, str]:
        keep = self.options["keep_running"]
        if keep is None:
            return not_set(self.name, n, "sched.keepnrunning.keep_running")
        out = keep - (batch.pending + batch.running)
        return out, (
            f"{self.name}: {out} ({keep} keep - {batch.pending} pending - {batch.running} running){removal(out)}"
        )
