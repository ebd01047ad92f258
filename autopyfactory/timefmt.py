"""How times and durations are written, in every output of the factory (API, pages, CLI, logs)."""

from __future__ import annotations

import time

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # UTC, e.g. 2026-01-02T03:04:05Z


def iso(when: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC; None stays None (never happened, unknown)."""
    return None if when is None else time.strftime(ISO_FORMAT, time.gmtime(when))


def duration(seconds: float | None) -> str:
    """A duration for people: ``45 s``, ``12 min``, ``3.5 h``, ``2.1 d``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
