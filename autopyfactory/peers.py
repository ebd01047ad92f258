"""Several factories serving one WMS queue: who is alive, and each one's share of the work.

A batch status plugin that sees the whole batch system (one Slurm cluster, one
HTCondor pool) reports the other factories' pilots of the same WMS queue in
``BatchQueueInfo.peers``: ``{factoryid: {"pending": n, "running": n,
"submitted_last": epoch}}``. A factory counts as alive while it has pending
pilots of the queue (it is serving it, however long ago it submitted them) or
has submitted within its last ``peers.alivecycles`` cycles; we do not know a
peer's cycle length, so ours (``apfqueue.sleep``) stands in for it. A peer
with no pending pilot that stops submitting drops out after that many cycles
and the others take its share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def alive_peers(peers: Mapping[str, Mapping], own: str, now: float, window: float) -> list[str]:
    """Ids of the other factories with pending pilots, or that submitted within ``window`` seconds of ``now``.

    Pending pilots make a peer alive whatever its last submission: two
    factories idle for longer than the window (or started together) would
    otherwise each see no one alive and both cover the whole need.
    """
    alive = []
    for factory, counts in peers.items():
        if factory == own:
            continue
        last = counts.get("submitted_last")
        if (counts.get("pending") or 0) > 0 or (last is not None and now - float(last) <= window):
            alive.append(factory)
    return sorted(alive)


def peers_pending(peers: Mapping[str, Mapping], own: str) -> int:
    """Pending pilots of the other factories (alive or not: a pending pilot will take work)."""
    return sum(int(counts.get("pending") or 0) for factory, counts in peers.items() if factory != own)


def share(need: int, alive: int) -> int:
    """This factory's part of ``need`` pilots when ``alive`` other factories serve the queue too."""
    if need <= 0:
        return 0
    return math.ceil(need / (1 + max(0, alive)))


def alive_window(alivecycles: int, sleep: float) -> float:
    return alivecycles * sleep
