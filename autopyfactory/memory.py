"""Keep the daemon's resident memory the size of what it holds, over months.

A factory runs a thread per queue (1,000 queues: 1,000 threads). glibc's
malloc gives threads up to 8 arenas per core, and an arena keeps the pages of
what was freed in it: allocations that come and go in many threads (cycle
records, status answers, JSON for the web page) leave every arena at its own
high-water mark, so RSS creeps up long after the live data stopped growing
(the soak measured 15 arenas holding 133 MB of a 270 MB daemon).

- ``limit_arenas()`` at start, before any thread: two arenas (the GIL lets one
  Python thread allocate at a time, so more arenas buy little but waste).
  An operator's ``MALLOC_ARENA_MAX`` in the environment wins.
- ``trim()`` from the daemon's main loop every ``TRIM_EVERY`` seconds: gives
  the free pages of every arena back to the system (``malloc_trim``).

Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

ARENAS = 2
TRIM_EVERY = 300.0
M_ARENA_MAX = -8  # glibc malloc.h


def _glibc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return None


_LIBC = _glibc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc arenas; True if set here (False: not glibc, or the environment says)."""
    if _LIBC is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give free memory back to the system; True if some was."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))
