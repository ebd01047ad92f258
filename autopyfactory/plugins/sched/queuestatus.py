"""Built-in scheduler plugins that follow the WMS queue's status: StatusTest, StatusOffline.

A queue put in ``test`` or ``offline`` in the WMS gets a fixed small number
of pilots (often 0) instead of what the chain computed. Semantics and
examples: docs/schedulers.md.
"""

from __future__ import annotations

from typing import ClassVar

from autopyfactory.config import Key
from autopyfactory.info import BatchQueueInfo, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo
from autopyfactory.plugins.sched._common import StatusStep


class WMSStatusOverride(StatusStep):
    """n = ``pilots`` while the WMS queue has status ``status``; n unchanged otherwise."""

    status: ClassVar[str] = ""

    def compute(self, n: int, wms: WMSQueueInfo, batch: BatchQueueInfo, info: SchedInfo) -> tuple[int, str]:
        if wms.status != self.status:
            return n, f"{self.name}: {n} unchanged (queue {wms.status})"
        pilots = self.options["pilots"]
        return pilots, f"{self.name}: queue {self.status}, {pilots} (was {n})"


class StatusTest(WMSStatusOverride):
    """A fixed number of pilots while the WMS queue is in ``test``.

    Keys: ``sched.statustest.pilots`` (0, at least 0). Output: ``pilots`` if the
    WMS queue status is ``test``, else n unchanged; 0 when status is unknown.
    """

    name = "StatusTest"
    status = "test"
    keys = {"pilots": Key("int", 0, min=0, help="pilots per cycle while the WMS queue is in test")}


class StatusOffline(WMSStatusOverride):
    """A fixed number of pilots while the WMS queue is ``offline``.

    Keys: ``sched.statusoffline.pilots`` (0, at least 0). Output: ``pilots`` if
    the WMS queue status is ``offline``, else n unchanged; 0 when status is unknown.
    """

    name = "StatusOffline"
    status = "offline"
    keys = {"pilots": Key("int", 0, min=0, help="pilots per cycle while the WMS queue is offline")}
