"""At most one log line per source and interval for things that repeat: refused calls, floods.

``LogThrottle.allow(source)`` says whether a line may be written now and how
many were held back before it: the first event of a source in an interval is
logged; the ones that follow within ``interval`` seconds are only counted, and
the count is said on the source's next logged line ("… and 1234 more since
…"). Memory is bounded: at most ``max_sources`` sources are remembered, the
oldest forgotten first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

REFUSALS_INTERVAL = 60.0  # seconds: one log line per source of refused calls


class LogThrottle:
    def __init__(self, interval: float = REFUSALS_INTERVAL, max_sources: int = 10000):
        self.interval = interval
        self.max_sources = max_sources
        self._lock = threading.Lock()
        self._sources: OrderedDict[object, list[float]] = OrderedDict()  # source -> [last logged, held back]

    def allow(self, source: object, now: float | None = None) -> tuple[bool, int]:
        """(log this one?, how many were held back since the source's last logged line)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._sources.get(source)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                return False, 0
            held = int(seen[1]) if seen is not None else 0
            self._sources[source] = [now, 0]
            self._sources.move_to_end(source)
            while len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
            return True, held


class ThrottleFilter(logging.Filter):
    """For a logger whose lines come in floods (waitress's "Task queue depth is N" under load): one line
    per interval; the next one let through says how many were held back."""

    def __init__(self, interval: float = REFUSALS_INTERVAL):
        super().__init__()
        self.throttle = LogThrottle(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        allowed, held = self.throttle.allow(record.name)
        if allowed and held:
            record.msg, record.args = f"{record.getMessage()} ({held} more such line(s) held back)", ()
        return allowed


def throttle_logger(name: str, interval: float = REFUSALS_INTERVAL) -> None:
    """Put a ThrottleFilter on the logger ``name`` (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, ThrottleFilter) for f in logger.filters):
        logger.addFilter(ThrottleFilter(interval))
