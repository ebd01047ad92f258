"""Built-in scheduler plugin NQueue: APF's "nqueue" rule, a queue depth kept while there is work.

APF 2.x's SimpleNQueue scheduler (``sched.simplenqueue.nqueue``, ``depthboost``;
``schedplugin = NQueue`` in some sites' files) kept up to ``nqueue`` pilots
queued at a site while PanDA had activated jobs for it: with activated jobs,
if fewer than ``nqueue`` pilots were queued, or there were more activated
jobs than queued pilots and fewer than ``nqueue x depthboost`` queued, it
submitted a full load of ``nqueue`` pilots; otherwise none. This is that rule.
"""

from __future__ import annotations

from autopyfactory.config import Key
from autopyfactory.info import BatchQueueInfo, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo
from autopyfactory.plugins.sched._common import StatusStep


class NQueue(StatusStep):
    """Keep a queue depth of pilots while there is ready work.

    Keys: ``sched.nqueue.nqueue`` (unset: no-op), ``sched.nqueue.depthboost`` (2).
    Output: with ready work, ``nqueue`` when ``pending < nqueue``, or when
    ``ready > pending`` and ``pending < nqueue x depthboost``; else 0. Without
    ready work 0. Replaces the number handed on (like Ready); 0 when status is unknown.
    """

    name = "NQueue"
    keys = {
        "nqueue": Key("int", None, min=0, help="pilots submitted at a time, and the queue depth kept"),
        "depthboost": Key("int", 2, min=1, help="with more ready jobs than pending pilots, keep up to "
                                                "nqueue x depthboost pending"),
    }

    def compute(self, n: int, wms: WMSQueueInfo, batch: BatchQueueInfo, info: SchedInfo) -> tuple[int, str]:
        nqueue, boost = self.options["nqueue"], self.options["depthboost"]
        if nqueue is None:
            return n, f"{self.name}: {n} unchanged (sched.nqueue.nqueue not set)"
        ready, pending = wms.ready, batch.pending
        if ready <= 0:
            return 0, f"{self.name}: 0 (no ready jobs, {pending} pending)"
        if pending < nqueue or (ready > pending and pending < nqueue * boost):
            return nqueue, f"{self.name}: {nqueue} ({ready} ready, {pending} pending < depth " \
                           f"{nqueue if pending < nqueue else nqueue * boost})"
        return 0, f"{self.name}: 0 ({ready} ready, {pending} pending: depth {nqueue} x {boost} reached)"
