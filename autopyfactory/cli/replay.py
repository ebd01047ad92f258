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
from autopyfactory.replay.policies import BUILTIN, CHAINS, PolicyError, make_policy
from autopyfactory.replay.report import plot, table
from autopyfactory.replay.store import parse_since, read_store
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


def limits(text: str) -> tuple[int, int]:
    """``PENDING:PERCYCLE`` -> two positive integers."""
    pending, _, per_cycle = text.partition(":")
    try:
        values = int(pending), int(per_cycle)
    except ValueError:
        values = (0, 0)
    if min(values) < 1 or max(values) > 1_000_000:
        raise argparse.ArgumentTypeError(f"expected PENDING:PERCYCLE, two integers from 1 to 1,000,000, got {text!r}")
    return values


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``apf replay`` on the subcommands of ``apf``."""
    p = sub.add_parser(
        "replay",
        help="replay a workload trace through scheduler chains and peer policies (simulated)",
        description="Replay job arrivals and run times in simulated time through the real scheduler plugins "
        "and a model of the batch system and the pilots, and report payload wait and empty pilots per policy. "
        f"Shipped traces: {', '.join(SHIPPED)}.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", help="SWF or CSV (submit,runtime) file, .gz allowed, or a shipped name")
    source.add_argument("--store", metavar="PATH",
                        help="the factory's SQLite store (persistence.dbpath): replay the work arrivals, run times "
                        "and queue waits it recorded")
    p.add_argument("--queue", help="with --store: the queue to replay (needed when the store has several)")
    p.add_argument("--since", help="with --store: from this time: 7d, 12h, 30m ago, ISO 8601 or epoch seconds "
                   "(default: everything recorded)")
    p.add_argument("--policy", action="append", metavar="NAME",
                   help=f"{', '.join(BUILTIN)}, the ablation chains {', '.join(CHAINS[2:])}, or "
                   f"queue:<queues.conf>:<section>; repeat for several (default: {', '.join(BUILTIN)})")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--plot", metavar="DIR", help="write burst.svg and pareto.svg into DIR (needs matplotlib)")
    p.add_argument("--max-jobs", type=number(int, more_than=0), default=MAX_JOBS,
                   help=f"refuse a trace with more jobs than this (default {MAX_JOBS:,})")
    model = p.add_argument_group("model (the same for every policy; bounds in docs/provisioning.md)")
    for name, kind, text in OPTIONS:
        default = getattr(DEFAULTS, name)
        if name == "slots":  # with --store: the most pilots the store saw running
            model.add_argument("--slots", type=kind, default=None,
                               help=f"{text} (default {default}; with --store the most pilots it saw running)")
            continue
        shown = "drawn from the seed" if default is None else (default or "none") if isinstance(default, str) else f"{default:g}"
        model.add_argument("--" + name.replace("_", "-"), type=kind, default=default,
                           help=f"{text} (default {shown})")
    p.add_argument("--same-limits", type=limits, metavar="PENDING:PERCYCLE",
                   help="cap every policy at these pilots pending and submitted per cycle, to compare the rules "
                   "rather than the limits (the chains keep their own limits too)")
    model.add_argument("--share", action="append", metavar="POLICY", default=[],
                       help="another queue with this policy shares the pool; the trace's jobs go to the queues "
                       "in turn; repeat for several")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        options = {name: getattr(args, name) for name, _, _ in OPTIONS}
        if args.store:
            recorded = read_store(args.store, args.queue, parse_since(args.since) if args.since else 0.0,
                                  args.seed, args.max_jobs)
            print(f"apf replay: {args.store}: {recorded.describe()}", file=sys.stderr)
            jobs, source = recorded.jobs, f"{args.store} [{recorded.queue}]"
            options.update(queue_waits=recorded.queue_waits)
            if options["slots"] is None:
                options["slots"] = recorded.peak_running
        else:
            if args.queue or args.since:
                raise TraceError("--queue and --since go with --store")
            jobs, source = read_trace(args.trace, args.max_jobs), args.trace
        if options["slots"] is None:
            options["slots"] = DEFAULTS.slots
        model = Model(**options, share=tuple(args.share))
        names = args.policy or BUILTIN
        policies = [make_policy(name, model) for name in names]
        neighbours = [[make_policy(name, model) for name in model.share] for _ in names]
        Replay(jobs, model, policies[0], neighbours=neighbours[0])  # refuses a run that would not end in time
    except (ValueError, TraceError, PolicyError) as exc:
        print(f"apf replay: {exc}", file=sys.stderr)
        return 2
    print(f"apf replay: {len(jobs)} jobs over {jobs[-1].submit / 86400:.1f} days, {len(policies)} policies",
          file=sys.stderr)
    results = [replay(jobs, model, policy, timeline=bool(args.plot), progress=True, neighbours=others,
                      limits=args.same_limits)
               for policy, others in zip(policies, neighbours, strict=True)]
    metrics = [result.metrics() for result in results]
    if args.json:
        print(json.dumps({"trace": source, "model": model.to_dict(), "same_limits": args.same_limits,
                          "results": metrics}, indent=1))
    else:
        print(f"# {source}: {len(jobs)} jobs; model {model.to_dict()}")
        print(table(metrics))
    if args.plot:
        try:
            paths = plot(results, args.plot, source)
        except RuntimeError as exc:
            print(f"apf replay: {exc}", file=sys.stderr)
            return 1
        print(f"apf replay: wrote {', '.join(paths)}", file=sys.stderr)
    return 0
