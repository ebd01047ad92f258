"""Keep the daemon's resident memory the size of what it holds, over months.

A factory ran a thread per queue (1,000 queues: 1,000 threads); it still runs
web, status, monitor and cycle worker threads. glibc's
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
- ``without_thread_caches()`` first thing at start: glibc also keeps a cache
  per thread (tcache: up to 7 freed chunks of each size up to 1 KiB). With
  1,000 threads those caches held 44 MB after 20 minutes and kept filling;
  memory in them counts as used, so ``malloc_trim`` cannot give it back. They
  can only be turned off before the process starts (``GLIBC_TUNABLES``), so
  the daemon executes itself once more with ``glibc.malloc.tcache_count=0``,
  then puts the environment back as it was: the batch commands and pilots it
  starts never see the setting. An operator's own ``tcache_count`` wins.

All do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

ARENAS = 2
TRIM_EVERY = 300.0
M_ARENA_MAX = -8  # glibc malloc.h
TUNABLES = "GLIBC_TUNABLES"
NO_THREAD_CACHE = "glibc.malloc.tcache_count=0"
RESTARTED = "APF_GLIBC_TUNABLES_BEFORE"  # set across the one re-execution: the operator's GLIBC_TUNABLES


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


def without_thread_caches() -> None:
    """Execute this program again with glibc's thread caches off; on the second run, restore the environment.

    Returns on the second run (and where there is nothing to do); the first
    run does not return. Signals the caller blocked stay pending across it.
    """
    if RESTARTED in os.environ:  # the second run: glibc has read its tunables
        before = os.environ.pop(RESTARTED)
        if before:
            os.environ[TUNABLES] = before
        else:
            os.environ.pop(TUNABLES, None)  # (a secure-mode start may have had it dropped already)
        return
    before = os.environ.get(TUNABLES, "")
    if _LIBC is None or not sys.executable or "glibc.malloc.tcache_count" in before:  # nothing to do, or theirs
        return
    environ = {**os.environ, TUNABLES: f"{before}:{NO_THREAD_CACHE}" if before else NO_THREAD_CACHE,
               RESTARTED: before}
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
    except OSError as exc:  # go on with the caches: more memory, nothing worse
        log.warning("memory: could not restart without glibc thread caches: %s", exc)
