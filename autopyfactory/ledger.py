"""Bounded pending (safety invariant 8): the factory's own ledger of its pilots, and the pending limit.

A batch status plugin can forget pilots (a bug, a lost squeue line, a plugin
that answers 0): the scheduler chain would then see them as missing and
replace them every cycle. So each queue keeps a ledger of the pilots it
submitted (by batch id) and crosses them off when a batch status answer
reports them ended (or the queue removed them). A pilot in the ledger counts
as pending or running whatever the batch status says: when the answer shows
fewer pilots than the ledger, the difference is counted as pending.

A pilot the factory never sees end (it ended while the factory was down and
the batch system forgot it) is counted for ``apfqueue.ledger.maxage`` seconds
after its submission at most; after that the batch status is trusted for it.

Beside it, ``apfqueue.maxpending`` caps the pilots pending in the batch
system per queue, after the chain, whatever the chain says. docs/semantics.md
says why the defaults are what they are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import replace

from autopyfactory.info import BatchQueueInfo


class Ledger:
    """Pilots one queue submitted and has not seen end: batch id -> submission time."""

    def __init__(self, maxage: float):
        self.maxage = maxage
        self._open: dict[str, float] = {}
        self._lock = threading.Lock()

    def restore(self, submissions: list[dict], ended: Iterable[str]) -> None:
        """Rebuild from the store: ``submissions`` as ``Store.submissions`` gives them (oldest first),
        ``ended``: ids of the queue's pilots the store saw end."""
        with self._lock:
            for row in submissions:
                ids = [str(i) for i in row.get("ids") or ()]
                if row.get("kind") == "submit":
                    self._open.update(dict.fromkeys(ids, float(row["time"])))
                else:  # removed by the factory
                    for jobid in ids:
                        self._open.pop(jobid, None)
            for jobid in ended:
                self._open.pop(jobid, None)

    def take_over(self, other: Ledger) -> None:
        """A reloaded queue keeps counting what its previous instance submitted."""
        with other._lock:
            entries = dict(other._open)
        with self._lock:
            self._open.update(entries)

    def submitted(self, ids: Iterable[str], when: float | None = None) -> None:
        when = time.time() if when is None else when
        with self._lock:
            self._open.update(dict.fromkeys((str(i) for i in ids), when))

    def ended(self, ids: Iterable[str]) -> None:
        """Pilots seen ended (in a batch status answer) or removed by the queue."""
        with self._lock:
            for jobid in ids:
                self._open.pop(jobid, None)

    def outstanding(self, now: float | None = None) -> int:
        """Pilots submitted within ``maxage`` and not seen end (older ones are forgotten here)."""
        oldest = (time.time() if now is None else now) - self.maxage
        with self._lock:  # entries are in submission order (nearly): forget from the oldest on
            while self._open:
                jobid, when = next(iter(self._open.items()))
                if when >= oldest:
                    break
                del self._open[jobid]
            return len(self._open)


def with_ledger_floor(batch: BatchQueueInfo, outstanding: int) -> tuple[BatchQueueInfo, str]:
    """The batch answer with the ledger as a floor: pilots it does not show count as pending.

    Returns the answer to plan from and, when the floor raised it, the cycle message saying so.
    """
    shown = batch.pending + batch.running  # running includes exiting
    if outstanding <= shown:
        return batch, ""
    missing = outstanding - shown
    return (replace(batch, pending=batch.pending + missing),
            f"ledger: {outstanding} pilot(s) of this queue not seen ending, batch status shows {shown}: "
            f"{missing} more counted as pending")


def pending_ceiling(n: int, pending: int, maximum: int | None) -> tuple[int, str]:
    """Hard ceiling ``apfqueue.maxpending`` on a submission, given the pilots pending now."""
    if n <= 0 or maximum is None or n <= maximum - pending:
        return n, ""
    allowed = max(0, maximum - pending)
    return allowed, f"apfqueue.maxpending ceiling: {n} capped to {allowed} ({maximum} max - {pending} pending)"
