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


THREAD_CACHES = """
import ctypes, json, os, subprocess, sys, threading
from autopyfactory import memory
print("started", file=sys.stderr, flush=True)
if sys.argv[1] == "tune":
    memory.without_thread_caches()

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
THREADS = 100
parked, leave = threading.Barrier(THREADS + 1), threading.Event()

def cycle():
    # what a queue thread does: objects above pymalloc's 512 B (malloc's), made and freed
    for size in range(520, 1024, 16):
        chunks = [bytearray(size) for _ in range(8)]
        del chunks
    parked.wait()  # alive, as a queue thread is between cycles
    leave.wait()

before = libc.mallinfo2().uordblks
threads = [threading.Thread(target=cycle) for _ in range(THREADS)]
for t in threads:
    t.start()
parked.wait()
held = libc.mallinfo2().uordblks - before
leave.set()
for t in threads:
    t.join()
print(json.dumps({
    "held_mb": held / 1e6,
    "environ": os.environ.get("GLIBC_TUNABLES"),
    "child_sees": [line for line in subprocess.run(["env"], capture_output=True, text=True).stdout.splitlines()
                   if line.startswith(("GLIBC_TUNABLES=", memory.RESTARTED))],
}))
"""


def child(code: str, *args: str, env: dict | None = None, runs: list | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env=env, check=True)
    if runs is not None:
        runs.extend(line for line in done.stderr.splitlines() if line == "started")
    return json.loads(done.stdout)


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


def without(name: str) -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != name}


def test_thread_caches_off_after_one_restart_and_the_environment_put_back():
    runs: list[str] = []
    tuned = child(THREAD_CACHES, "tune", env=without("GLIBC_TUNABLES"), runs=runs)
    default = child(THREAD_CACHES, "default", env=without("GLIBC_TUNABLES"))
    # 100 idle threads: glibc's caches hold what each freed (the test can fail: without them nothing is held)
    assert default["held_mb"] > 10, default
    assert tuned["held_mb"] < default["held_mb"] / 5, (tuned, default)
    assert len(runs) == 2, runs  # executed once more, not in a loop
    # the setting was for this process: its environment and its children's are as they were
    assert tuned["environ"] is None and tuned["child_sees"] == [], tuned


def test_an_operators_glibc_tunables_are_kept_and_their_tcache_setting_wins():
    import os

    runs: list[str] = []
    theirs = child(THREAD_CACHES, "tune", env={**os.environ, "GLIBC_TUNABLES": "glibc.malloc.check=0"}, runs=runs)
    assert len(runs) == 2 and theirs["held_mb"] < 2, theirs  # added to theirs
    assert theirs["environ"] == "glibc.malloc.check=0" and theirs["child_sees"] == ["GLIBC_TUNABLES=glibc.malloc.check=0"]

    runs.clear()
    chosen = child(THREAD_CACHES, "tune", env={**os.environ, "GLIBC_TUNABLES": "glibc.malloc.tcache_count=3"},
                   runs=runs)
    assert len(runs) == 1  # not executed again
    assert chosen["environ"] == "glibc.malloc.tcache_count=3" and chosen["held_mb"] > 5, chosen


def test_a_second_run_whose_tunables_were_dropped_still_starts():
    """glibc drops GLIBC_TUNABLES in secure mode: the second run finds only the marker."""
    code = ("import os, sys; from autopyfactory import memory; memory.without_thread_caches(); "
            "print(os.environ.get('GLIBC_TUNABLES'), memory.RESTARTED in os.environ)")
    env = {**without("GLIBC_TUNABLES"), memory.RESTARTED: ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "False"]
