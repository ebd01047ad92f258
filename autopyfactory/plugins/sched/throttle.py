"""Built-in scheduler plugin Throttle: the black-hole guard.

A worker node that kills every pilot within seconds (a broken disk, a missing
mount, a bad CVMFS) eats every pilot it is given. When too many of a queue's
recently finished pilots ran too short, Throttle caps the queue to a trickle
until pilots live long enough again. Semantics and examples: docs/schedulers.md.
"""

from __future__ import annotations

import time

from autopyfactory.config import Key
from autopyfactory.info import FinishedPilot
from autopyfactory.interfaces import SchedInfo, SchedulerPlugin


class Throttle(SchedulerPlugin):
    """Cap the queue to ``submit`` pilots while it looks like a black hole.

    Keys: ``sched.throttle.interval`` (3600 s): how far back to look;
    ``sched.throttle.maxtime`` (10 s): a pilot that ran less is "short";
    ``sched.throttle.ratio`` (0.5): more than this fraction of short pilots
    is a black hole; ``sched.throttle.submit`` (1): the cap while it is one.
    History: the pilots that finished in the last ``interval`` seconds
    (``SchedInfo.finished``: the batch status, later the persistence store);
    pilots that never started (removed while idle, failed to boot) have no
    run time and are not counted.
    Output: ``min(n, submit)`` when ``short / total > ratio``, else n; n
    unchanged with no history. A guard only lowers: APF 2.4 set n = submit,
    sending pilots into the black hole even when there was no work.
    """

    name = "Throttle"
    keys = {
        "interval": Key("int", 3600, min=1, help="seconds of finished pilots to look at"),
        "maxtime": Key("int", 10, min=0, help="a pilot that ran fewer seconds is too short"),
        "ratio": Key("float", 0.5, min=0, max=1, help="fraction of short pilots above which the queue is a black hole"),
        "submit": Key("int", 1, min=0, help="pilots per cycle while the queue is a black hole"),
    }

    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]:
        interval, maxtime = self.options["interval"], self.options["maxtime"]
        ratio, submit = self.options["ratio"], self.options["submit"]
        now = info.now or time.time()
        runtimes = [
            runtime
            for runtime in (_runtime(pilot, now - interval) for pilot in info.finished or ())
            if runtime is not None
        ]
        if not runtimes:
            return n, f"Throttle: {n} unchanged (no finished pilots with a run time in the last {interval} s)"
        short = sum(1 for runtime in runtimes if runtime < maxtime)
        seen = f"{short} of {len(runtimes)} pilots in the last {interval} s ran < {maxtime} s"
        if short / len(runtimes) <= ratio:
            return n, f"Throttle: {n} unchanged ({seen}, ratio {ratio:g})"
        out = min(n, submit)
        if out < n:
            return out, f"Throttle: black hole? {n} capped to {out} ({seen}, above ratio {ratio:g})"
        return out, f"Throttle: black hole? {n}, within {submit} ({seen}, above ratio {ratio:g})"


def _runtime(pilot: FinishedPilot, since: float) -> float | None:
    """Run time of a pilot that finished after ``since``; None when it never started or ended earlier."""
    if pilot.end < since or pilot.state == "removed":
        return None
    return pilot.runtime
