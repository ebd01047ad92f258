"""``apf replay``: how well policies would have served a recorded workload (simulated, nothing submitted).

Example::

    $ apf replay --trace mysite.swf --policy apf-default --policy queue:/etc/apf/queues.conf:MYQUEUE
"""

from __future__ import annotations

import argparse
import json
import sys

from autopyfactory.cli import number
from autopyfactory.replay.model import Model, Replay, replay
from autopyfactory.replay.policies import BUILTIN, PolicyError, make_policy
from autopyfactory.replay.report import plot, table
from autopyfactory.replay.traces import MAX_JOBS, SHIPPED, TraceError, read_trace

DEFAULTS = Model()
FINITE, POSITIVE, COUNT = number(float), number(float, more_than=0), number(int, more_than=0)
OPTIONS = [  # (Model field, type, help): every model option of the command line
    ("slots", COUNT, "cores of the batch pool (a pilot takes --pilot-cores of them)"),
    ("queue_delay", str, "pilot delay in the batch queue before it may start: fixed:S, exp:MEAN or uniform:A:B s"),
    ("delay_per_pending", FINITE, "seconds added to a pilot's queue delay per pilot of its queue already pending"),
    ("cycle", POSITIVE, "seconds between two cycles"),
    ("status_interval", POSITIVE, "seconds between two status polls, WMS and batch each"),
    ("status_phase", FINITE, "seconds from the start to each poller's first poll"),
    ("status_jitter", FINITE, "random change of each poll interval, a fraction of it"),
    ("pilot_tries", COUNT, "empty getJob tries before a pilot exits"),
    ("pilot_retry", POSITIVE, "seconds between two getJob tries"),
    ("timefloor", FINITE, "a pilot takes new work only while it has run less than this, s (0: one job a pilot)"),
    ("walltime", POSITIVE, "pilot wall-time limit, s"),
    ("removal_delay", FINITE, "seconds from asking to remove a pending pilot to its removal (it may start first)"),
    ("pilot_cores", COUNT, "cores of a pilot (a partitionable slot: it runs jobs while they fit)"),
    ("job_cores", str, "one (every job one core) or trace (the trace's processors, at most --pilot-cores)"),
    ("start_failure", FINITE, "fraction of pilots that fail as they start"),
    ("black_hole", str, "START:LENGTH s: every pilot starting in that period fails"),
    ("seed", number(int), "random seed"),
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``apf replay`` on the subcommands of ``apf``."""
    p = sub.add_parser(
        "replay",
        help="replay a workload trace through scheduler chains and peer policies (simulated)",
        description="Replay job arrivals and run times in simulated time through the real scheduler plugins "
        "and a model of the batch system and the pilots, and report payload wait and empty pilots per policy. "
        f"Shipped traces: {', '.join(SHIPPED)}.",
    )
    p.add_argument("--trace", required=True, help="SWF or CSV (submit,runtime) file, .gz allowed, or a shipped name")
    p.add_argument("--policy", action="append", metavar="NAME",
                   help=f"{', '.join(BUILTIN)} or queue:<queues.conf>:<section>; repeat for several "
                   "(default: every built-in one)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--plot", metavar="DIR", help="write burst.svg and pareto.svg into DIR (needs matplotlib)")
    p.add_argument("--max-jobs", type=number(int, more_than=0), default=MAX_JOBS,
                   help=f"refuse a trace with more jobs than this (default {MAX_JOBS:,})")
    model = p.add_argument_group("model (the same for every policy; bounds in docs/provisioning.md)")
    for name, kind, text in OPTIONS:
        default = getattr(DEFAULTS, name)
        shown = "drawn from the seed" if default is None else (default or "none") if isinstance(default, str) else f"{default:g}"
        model.add_argument("--" + name.replace("_", "-"), type=kind, default=default,
                           help=f"{text} (default {shown})")
    model.add_argument("--share", action="append", metavar="POLICY", default=[],
                       help="another queue with this policy shares the pool; the trace's jobs go to the queues "
                       "in turn; repeat for several")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        model = Model(**{name: getattr(args, name) for name, _, _ in OPTIONS}, share=tuple(args.share))
        jobs = read_trace(args.trace, args.max_jobs)
        names = args.policy or BUILTIN
        policies = [make_policy(name, model) for name in names]
        neighbours = [[make_policy(name, model) for name in model.share] for _ in names]
        Replay(jobs, model, policies[0], neighbours=neighbours[0])  # refuses a run that would not end in time
    except (ValueError, TraceError, PolicyError) as exc:
        print(f"apf replay: {exc}", file=sys.stderr)
        return 2
    print(f"apf replay: {len(jobs)} jobs over {jobs[-1].submit / 86400:.1f} days, {len(policies)} policies",
          file=sys.stderr)
    results = [replay(jobs, model, policy, timeline=bool(args.plot), progress=True, neighbours=others)
               for policy, others in zip(policies, neighbours, strict=True)]
    metrics = [result.metrics() for result in results]
    if args.json:
        print(json.dumps({"trace": args.trace, "model": model.to_dict(), "results": metrics}, indent=1))
    else:
        print(f"# {args.trace}: {len(jobs)} jobs; model {model.to_dict()}")
        print(table(metrics))
    if args.plot:
        try:
            paths = plot(results, args.plot, args.trace)
        except RuntimeError as exc:
            print(f"apf replay: {exc}", file=sys.stderr)
            return 1
        print(f"apf replay: wrote {', '.join(paths)}", file=sys.stderr)
    return 0
