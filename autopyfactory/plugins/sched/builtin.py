"""Built-in scheduler plugins that set the number: Ready, Fixed, Scale, Null.

The caps and floors are in ``limits.py``, the WMS queue status overrides in
``queuestatus.py``, the black-hole guard in ``throttle.py``. Semantics and
examples: docs/schedulers.md.
"""

from __future__ import annotations

import math
from decimal import Decimal

from autopyfactory.config import Key
from autopyfactory.info import BatchQueueInfo, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo, SchedulerPlugin
from autopyfactory.peers import peers_pending, share
from autopyfactory.plugins.sched._common import StatusStep


class Ready(StatusStep):
    """Pilots for the work that is ready and not yet covered by pending pilots.

    Keys: ``sched.ready.offset`` (0, at least 0): ready jobs to leave alone;
    ``sched.ready.sharewithpeers`` (false): other factories serve the same WMS
    queue (``BatchQueueInfo.peers``): subtract their pending pilots too and take
    this factory's share, ``ceil(need / (1 + alive peers))``.
    Output: ``max(0, (ready - offset) - pending)``, whatever it is handed;
    0 when WMS or batch status is unknown.
    """

    name = "Ready"
    keys = {
        "offset": Key("int", 0, min=0, help="ready jobs to leave alone"),
        "sharewithpeers": Key("bool", False, help="share the work with other factories serving this WMS queue"),
    }

    def compute(self, n: int, wms: WMSQueueInfo, batch: BatchQueueInfo, info: SchedInfo) -> tuple[int, str]:
        offset = self.options["offset"]
        ready, pending = wms.ready, batch.pending
        out = max(0, ready - offset - pending)
        if not self.options.get("sharewithpeers"):
            return out, f"Ready: {out} ({ready} ready - {offset} offset - {pending} pending)"
        others = peers_pending(batch.peers, self.factory.get("factoryId", ""))
        need = max(0, ready - offset - pending - others)
        out = share(need, info.alive_peers)
        return out, (f"Ready: {out} ({ready} ready - {offset} offset - {pending} pending - {others} peers' pending"
                     f" = {need}, shared by {1 + info.alive_peers} alive factories)")


class Fixed(SchedulerPlugin):
    """A constant number of pilots every cycle, whatever it is handed.

    Keys: ``sched.fixed.pilotspercycle`` (0, at least 0). Output: the constant
    (reads no status; the queue submits nothing while status is unknown).
    """

    name = "Fixed"
    keys = {"pilotspercycle": Key("int", 0, min=0, help="pilots to submit every cycle")}

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        out = self.options["pilotspercycle"]
        return out, f"Fixed: {out} (pilotspercycle)"


class Scale(SchedulerPlugin):
    """Scale the number handed on by a factor.

    Keys: ``sched.scale.factor`` (1.0, at least 0). Output: ``ceil(n * factor)``;
    a removal (negative n) shrinks towards 0 the same way.
    """

    name = "Scale"
    keys = {"factor": Key("float", 1.0, min=0, help="multiply the number handed on by this")}

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        factor = self.options["factor"]
        # Decimal of the written factor: 10 * 0.3 is 3, not ceil(3.0000000000000004) = 4
        out = math.ceil(n * Decimal(repr(factor)))
        return out, f"Scale: {out} (ceil({n} * {factor:g}))"


class Null(SchedulerPlugin):
    """Always 0: a queue that is configured but must not submit. No keys."""

    name = "Null"

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        return 0, "Null: 0"
