"""History charts over days from a big store: how long the 7-day chart of one queue takes when the store
holds 14 days of 2,000 queues.

The store is written first, straight into SQLite with the factory's own schema
(``persistence.Store``): N queues × D days of cycle records, one every
``--sleep`` seconds (APF's default ``apfqueue.sleep``, 360 s), each with a real
cycle record's JSON, and one ended pilot per cycle, and the factory's own samples
(one a minute, ``factory_history``). A factory with one of those
queues then runs on that store, and its web application answers, through its
WSGI entry point (median of ``--repeat``, after one untimed warm-up):

- ``GET /queues/<q>?span=7d`` — the queue's page with its 7-day history charts;
- ``GET /api/v1/queues/<q>/history?since=7d`` — the JSON behind them;
- ``GET /history?span=24h`` and ``?span=7d`` — the whole factory's history page;
- as the baseline in the same run, ``GET /api/v1/queues/<q>`` (the queue's JSON, no history).

    python -m bench.history [--queues 2000] [--days 14] [--sleep 360] [--repeat 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from autopyfactory.persistence import SAMPLE_SECONDS, Store
from autopyfactory.records import CycleRecord, SchedStep
from bench.common import factory_id, median, quiet, running_factory, section, write_config
from bench.page import get

DAY = 86400.0


def record_json(queue: str) -> str:
    """A real cycle record's JSON, with a place for the WMS's activated count."""
    record = CycleRecord(queue, 1, started=0.0, duration=0.02,
                         wms={"notready": 0, "ready": 987654321, "running": 40, "done": 0, "failed": 0,
                              "status": "online"},
                         batch={"pending": 5, "running": 40, "exiting": 1, "held": 0, "done": 3, "fault": 0,
                                "peers": {}, "reasons": {"Priority": 5}},
                         steps=[SchedStep("Ready", 7, "Ready: 7 (12 ready - 0 offset - 5 pending)"),
                                SchedStep("MaxPerCycle", 7, "MaxPerCycle: 7 (at most 20)")],
                         decided=7, submitted=7, ids=[f"{i}.0" for i in range(7)])
    return json.dumps(record.to_dict(), default=str)


def build_store(path: Path, queues: int, days: float, sleep: float, now: float) -> dict:
    """N queues × D days of cycles and ended pilots; (rows, bytes, seconds) of the build."""
    Store(str(path)).close()  # the schema, exactly as the factory makes it
    started = time.perf_counter()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    cycles_per_queue = int(days * DAY / sleep)
    first = now - days * DAY
    rows = 0
    for q in range(queues):
        name = f"Q{q:04d}"
        template = record_json(name)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO cycles (queue, number, started, duration, pending, running, decided, submitted, removed,"
            " errors, message, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            ((name, i + 1, first + i * sleep, 0.02, i % 50, 40, 7, 1, 0, 0, "Ready: 7",
              template.replace("987654321", str((i * 7) % 300))) for i in range(cycles_per_queue)))
        conn.executemany(
            "INSERT INTO pilots (queue, jobid, factory, state, start, end, exitcode) VALUES (?,?,?,?,?,?,?)",
            ((name, f"{q}{i}.0", "bench", "fault" if i % 10 == 0 else "done", first + i * sleep,
              first + i * sleep + 300, 1 if i % 10 == 0 else 0) for i in range(cycles_per_queue)))
        conn.execute("COMMIT")
        rows += 2 * cycles_per_queue
    # the factory's own samples, one a minute, as the store writes them while the queues cycle
    samples = int(days * DAY / SAMPLE_SECONDS)
    per_sample = SAMPLE_SECONDS / sleep * queues
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO factory_history (time, pending, running, activated, submitted, done, fault)"
                     " VALUES (?,?,?,?,?,?,?)",
                     ((first + i * SAMPLE_SECONDS, 25 * queues, 40 * queues, 150 * queues, round(per_sample),
                       round(per_sample * 0.9), round(per_sample * 0.1)) for i in range(samples)))
    conn.execute("COMMIT")
    rows += samples
    conn.close()
    return {"rows": rows, "store_bytes": path.stat().st_size, "build_seconds": time.perf_counter() - started}


def measure(queues: int, days: float, sleep: float, repeat: int, keep: Path | None) -> dict:
    from autopyfactory.web.app import WebApp
    from autopyfactory.web.history import PilotHistory

    with tempfile.TemporaryDirectory(prefix="apf-bench-history-", dir=keep) as tmp:
        root = Path(tmp)
        store = root / "apf.sqlite"
        now = time.time()
        built = build_store(store, queues, days, sleep, now)
        target = f"Q{queues // 2:04d}"
        conf = write_config(root / "conf", section(target, {
            "wmsstatusplugin": "Local", "batchstatusplugin": "Local", "batchsubmitplugin": "Local",
            "schedplugin": "Ready", "executable": "/bin/true", "apfqueue.sleep": 60}),
            {"persistence.dbpath": store, "wmsstatus.local.sleep": 1, "batchstatus.local.sleep": 1},
            factory_id("history"))
        with running_factory(conf, cycles=1) as factory:
            app = WebApp(factory, PilotHistory())
            figures = {}
            paths = {"baseline_queue_json": f"/api/v1/queues/{target}",
                     "queue_page_7d": f"/queues/{target}?span=7d",
                     "history_json_7d": f"/api/v1/queues/{target}/history?since=7d",
                     "factory_page_24h": "/history?span=24h",
                     "factory_page_7d": "/history?span=7d"}
            for name, path in paths.items():
                target_path, _, query = path.partition("?")
                times = []
                for attempt in range(repeat + 1):
                    seconds, status, size = get(app, target_path, query)
                    if status != 200:
                        raise RuntimeError(f"GET {path}: {status}")
                    if attempt:  # the first one warms the page cache
                        times.append(seconds)
                figures[name] = median(times)
                figures[f"{name}_bytes"] = size
    return {"queues": queues, "days": days, "sleep": sleep, **built, **figures,
            "ratio_queue_page_to_baseline": figures["queue_page_7d"] / figures["baseline_queue_json"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queues", type=int, default=2000)
    p.add_argument("--days", type=float, default=14)
    p.add_argument("--sleep", type=float, default=360.0, help="seconds between a queue's cycles (apfqueue.sleep)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--keep", type=Path, default=None, help="build the store under this directory (default /tmp)")
    p.add_argument("--json", default=None, help="write the figures to this file")
    args = p.parse_args(argv)
    quiet()
    r = measure(args.queues, args.days, args.sleep, args.repeat, args.keep)
    print(f"store: {r['queues']} queues x {r['days']:g} days (a cycle every {r['sleep']:g} s): {r['rows']:,} rows, "
          f"{r['store_bytes'] / 1e9:.2f} GB, built in {r['build_seconds']:.0f} s")
    print(f"queue page with its 7-day history: {r['queue_page_7d']:.3f} s ({r['queue_page_7d_bytes'] / 1e3:.0f} kB); "
          f"its history JSON {r['history_json_7d']:.3f} s; baseline /api/v1/queues/<q> "
          f"{r['baseline_queue_json']:.3f} s (page / baseline = {r['ratio_queue_page_to_baseline']:.1f})")
    print(f"factory history page: 24 h {r['factory_page_24h']:.3f} s, 7 d {r['factory_page_7d']:.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
