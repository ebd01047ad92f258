"""Provisioning quality: every policy on the shipped traces and a sweep of seeded bursty workloads.

    .venv/bin/python -m bench.provisioning     (needs matplotlib: pip install -e '.[plot]')

Prints one Markdown table per workload (for docs/provisioning.md), says where
``recommended`` misses its target (p95 wait below apf-default's with no more
empty pilots; not dominated by a peer), and writes the plots of the shipped
traces into docs/provisioning/.
"""

from __future__ import annotations

import os
import sys

from autopyfactory.replay.model import Model, replay
from autopyfactory.replay.policies import BUILTIN, make_policy
from autopyfactory.replay.report import pareto, plot, table
from autopyfactory.replay.traces import SHIPPED, bursty, read_trace

PLOTS = os.path.join(os.path.dirname(__file__), "..", "docs", "provisioning")
SWEEP = [(size, gap) for size in (50, 200, 500) for gap in (1800, 7200)]


def verdict(metrics: list[dict]) -> str:
    by = {m["policy"]: m for m in metrics}
    rec, base = by["recommended"], by["apf-default"]
    misses = []
    if not rec["payload_wait_p95"] < base["payload_wait_p95"]:
        misses.append(f"p95 {rec['payload_wait_p95']:.0f} s vs apf-default {base['payload_wait_p95']:.0f} s "
                      f"({rec['payload_wait_p95'] / base['payload_wait_p95'] - 1:+.0%})")
    if rec["empty_pilot_fraction"] > base["empty_pilot_fraction"]:
        misses.append(f"empty {rec['empty_pilot_fraction']:.1%} vs apf-default {base['empty_pilot_fraction']:.1%}")
    if "recommended" not in pareto(metrics):
        misses.append("dominated on (p95 wait, empty fraction)")
    return "target met" if not misses else "target missed: " + "; ".join(misses)


def run(name: str, jobs, model: Model, plots: bool) -> None:
    results = [replay(jobs, model, make_policy(p, model), timeline=plots) for p in BUILTIN]
    metrics = [r.metrics() for r in results]
    print(f"\n### {name} ({len(jobs)} jobs)\n\n{table(metrics, markdown=True)}\n\n{verdict(metrics)}", flush=True)
    if plots:
        paths = plot(results, os.path.join(PLOTS, name), name)
        print(f"\nplots: {', '.join(os.path.relpath(p, os.path.join(PLOTS, '..')) for p in paths)}", flush=True)


def main() -> int:
    model = Model()
    print(f"model: {model.to_dict()}")
    for name in SHIPPED:
        run(name, read_trace(name), model, plots=True)
    for size, gap in SWEEP:
        run(f"bursty-{size}-every-{gap}s", bursty(seed=1, burst_size=size, idle_gap=gap), model,
            plots=(size, gap) == (200, 7200))
    return 0


if __name__ == "__main__":
    sys.exit(main())
