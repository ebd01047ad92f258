"""Status page with many queues: how long the server takes to render ``/`` (and one queue's page).

A real factory of N Local queues (with the persistence store, as the daemon
runs) cycles a few times; every queue has cycle records and a pilot history.
Its web application then answers ``GET /``, ``GET /queues/<name>`` and, as the
baseline measured in the same run, ``GET /api/v1/queues`` (the same queues as
JSON) through its WSGI entry point, several times each; the median is kept.

    python -m bench.page [--queues 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from bench.common import factory_id, median, quiet, running_factory, section, write_config
from tests.waiting import wait_for

CYCLES = 3


def queues_conf(n: int) -> str:
    return "".join(section(f"Q{i:04d}", {
        "wmsstatusplugin": "Local", "batchstatusplugin": "Local", "batchsubmitplugin": "Local",
        "schedplugin": "Ready", "executable": "/bin/true", "apfqueue.sleep": 1,
    }) for i in range(n))


def get(app, path: str, query: str = "") -> tuple[float, int, int]:
    """(seconds, HTTP status, body bytes) of one GET through the WSGI entry point."""
    answer: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": "127.0.0.1",
               "wsgi.input": io.BytesIO()}
    started = time.perf_counter()
    body = b"".join(app(environ, lambda status, headers: answer.append(status)))
    return time.perf_counter() - started, int(answer[0].split()[0]), len(body)


def measure(n: int, repeat: int) -> dict:
    from autopyfactory.web.app import WebApp
    from autopyfactory.web.history import PilotHistory

    with tempfile.TemporaryDirectory(prefix="apf-bench-page-") as tmp:
        root = Path(tmp)
        conf = write_config(root, queues_conf(n), {"wmsstatus.local.sleep": 1, "batchstatus.local.sleep": 1},
                            factory_id("page"))
        with running_factory(conf, cycles=CYCLES) as factory:
            wait_for(lambda: all(q.cycles >= CYCLES for q in factory.queues.values()),
                     f"{CYCLES} cycles of {n} queues", timeout=60 + n * 0.1)
            app = WebApp(factory, PilotHistory())
            figures = {}
            for name, path in (("json", "/api/v1/queues"), ("page", "/"), ("queue_page", "/queues/Q0000")):
                times = []
                for _ in range(repeat):
                    seconds, status, size = get(app, path)
                    if status != 200:
                        raise RuntimeError(f"GET {path}: {status}")
                    times.append(seconds)
                figures[name] = median(times)
                figures[f"{name}_bytes"] = size
    return {"queues": n, **figures, "ratio_page_to_json": figures["page"] / figures["json"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queues", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    quiet()
    result = measure(args.queues, args.repeat)
    print(f"{result['queues']} queues: status page {result['page']:.3f} s ({result['page_bytes'] / 1e6:.1f} MB), "
          f"queue page {result['queue_page']:.3f} s, /api/v1/queues {result['json']:.3f} s "
          f"(page / JSON = {result['ratio_page_to_json']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
