"""glibc malloc tuning of the daemon (autopyfactory/memory.py), each in a fresh process.

Found by the soak: with a thread per queue, glibc's per-thread arenas kept the pages
of what was freed, and RSS crept up while the live data stayed the same.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from autopyfactory import memory

pytestmark = pytest.mark.skipif(memory._LIBC is None, reason="the C library is not glibc")

ARENAS = """
import json, re, sys, threading
from autopyfactory import memory
limited = memory.limit_arenas() if sys.argv[1] == "limit" else None
start = threading.Barrier(8)

def churn():
    start.wait()  # all at once: contention is what makes glibc add arenas
    for _ in range(200):
        blocks = [bytearray(2048) for _ in range(200)]
        del blocks

threads = [threading.Thread(target=churn) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
maps = [re.match(r"([0-9a-f]+)-([0-9a-f]+) (\\S+)", line) for line in open("/proc/self/maps")]
maps = [(int(m[1], 16), int(m[2], 16), m[3]) for m in maps if m]
# a thread arena: a 64 MiB reservation, its used part read-write, the rest without access
arenas = sum(1 for a, b in zip(maps, maps[1:]) if a[2].startswith("rw") and b[2].startswith("---")
             and a[1] == b[0] and b[1] - a[0] == 64 << 20)
print(json.dumps({"limited": limited, "arenas": arenas}))
"""

TRIM = """
import json, sys
from autopyfactory import memory

def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024

blocks = [bytearray(2048) for _ in range(100_000)]  # 200 MB through malloc (above pymalloc's 512 B)
kept = blocks[::50]  # what stays alive is scattered: no page at the top of the heap is free
del blocks
before = rss()
trimmed = memory.trim()
print(json.dumps({"before": before, "after": rss(), "trimmed": trimmed, "kept": len(kept)}))
"""


def child(code: str, *args: str, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                         env=env, check=True).stdout
    return json.loads(out)


def test_two_arenas_for_many_threads():
    import os

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    limited = child(ARENAS, "limit", env=env)
    default = child(ARENAS, "default", env=env)
    assert limited["limited"] is True
    assert limited["arenas"] <= 1, limited  # the main arena and one more
    assert default["arenas"] >= 2, default  # the test can fail: glibc left alone adds arenas


def test_an_operators_malloc_arena_max_wins():
    import os

    answer = child(ARENAS, "limit", env={**os.environ, "MALLOC_ARENA_MAX": "4"})
    assert answer["limited"] is False


def test_trim_gives_freed_memory_back():
    answer = child(TRIM)
    assert answer["trimmed"] is True
    assert answer["before"] - answer["after"] > 100, answer  # MB: the freed 196 MB, not the 4 MB kept
