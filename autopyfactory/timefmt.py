"""How times and durations are written, in every output of the factory (API, pages, CLI, logs)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

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


RELATIVE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RELATIVE = re.compile(r"\+?(\d+(?:\.\d+)?)\s*([smhd])")


def parse_time(text: str, now: float | None = None) -> float:
    """When ``text`` says, in epoch seconds: ISO 8601 (``2026-12-02T06:00Z``; no zone = UTC) or
    relative to ``now`` (``+2h``, ``30m``, ``90s``, ``1d``). ValueError says what is accepted."""
    now = time.time() if now is None else now
    raw = text.strip()
    relative = RELATIVE.fullmatch(raw.lower())
    if relative:
        return now + float(relative.group(1)) * RELATIVE_UNITS[relative.group(2)]
    try:
        when = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in ("Z", "z") else raw)
    except ValueError:
        raise ValueError(f"not a time (expected ISO 8601 like 2026-12-02T06:00Z, or relative like +2h, 30m; "
                         f"got {text!r})") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_duration(text: str) -> float:
    """Seconds that ``text`` says: a number of seconds (``300``) or with a unit (``90s``, ``5m``, ``6h``, ``7d``).
    ValueError says what is accepted."""
    raw = text.strip().lower()
    relative = RELATIVE.fullmatch(raw)
    if relative and not raw.startswith("+"):
        return float(relative.group(1)) * RELATIVE_UNITS[relative.group(2)]
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"not a duration (expected seconds, or a number with s, m, h or d like 5m, 7d; got {text!r})")
    return seconds
