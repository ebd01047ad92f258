"""How times and durations are written, in every output of the factory (API, pages, CLI, logs)."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # UTC, e.g. 2026-01-02T03:04:05Z
# the furthest end a pause or drain may have (apf pause/drain --until): a year, said in docs/semantics.md
HOLD_HORIZON = 365 * 86400.0


def iso(when: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC; None stays None (never happened, unknown).

    Never raises: a value that is no representable time (a damaged store row,
    an absurd input) is None too, so that no view fails over one value."""
    return None if when is None else utc(when, ISO_FORMAT)


def utc(when: float, fmt: str) -> str | None:
    """``when`` (epoch seconds) in ``fmt`` (strftime, UTC); None for a value that is no representable time."""
    try:
        return time.strftime(fmt, time.gmtime(float(when)))
    except (OverflowError, ValueError, OSError, TypeError):
        return None


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
        when = now + float(relative.group(1)) * RELATIVE_UNITS[relative.group(2)]
        if not math.isfinite(when):
            raise ValueError(f"not a time: {text!r} is beyond any date")
        return when
    try:
        when = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in ("Z", "z") else raw)
    except ValueError:
        raise ValueError(f"not a time (expected ISO 8601 like 2026-12-02T06:00Z, or relative like +2h, 30m; "
                         f"got {text!r})") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_until(text: str, now: float | None = None) -> float:
    """The end of a pause or drain: a time (``parse_time``) in the future, at most ``HOLD_HORIZON`` ahead."""
    now = time.time() if now is None else now
    when = parse_time(text, now)
    if when <= now:
        raise ValueError(f"until {text!r} ({iso(when)}) is not in the future")
    if when > now + HOLD_HORIZON:
        raise ValueError(f"until {text!r} is more than {HOLD_HORIZON / 86400:.0f} days ahead (the furthest a pause "
                         f"or drain may end; without --until it lasts until resumed)")
    return when


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
