"""``apf replay``: how well policies would have served a recorded workload (simulated, nothing submitted).

Example::

    $ apf replay --trace mysite.swf --policy apf-default --policy queue:/etc/apf/queues.conf:MYQUEUE
"""

from __future__ import annotations

import argparse
import json
import sys

from autopyfactory.cli import number
from autopyfactory.replay.model import Model, delay_sampler, replay
from autopyfactory.replay.policies import BUILTIN, PolicyError, make_policy
from autopyfactory.replay.report import plot, table
from autopyfactory.replay.traces import SHIPPED, TraceError, read_trace

DEFAULTS = Model()


def positive(kind: type[int] | type[float]):
    return number(kind, more_than=0)


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
    model = p.add_argument_group("model (the same for every policy)")
    model.add_argument("--slots", type=positive(int), default=DEFAULTS.slots,
                       help=f"batch slots (default {DEFAULTS.slots})")
    model.add_argument("--queue-delay", default=DEFAULTS.queue_delay,
                       help=f"pilot delay in the batch queue before it may start: fixed:S, exp:MEAN or "
                       f"uniform:A:B seconds (default {DEFAULTS.queue_delay})")
    model.add_argument("--cycle", type=positive(float), default=DEFAULTS.cycle,
                       help=f"seconds between two cycles (default {DEFAULTS.cycle:g})")
    model.add_argument("--status-interval", type=positive(float), default=DEFAULTS.status_interval,
                       help=f"seconds between two status polls: the status lag (default {DEFAULTS.status_interval:g})")
    model.add_argument("--pilot-tries", type=positive(int), default=DEFAULTS.pilot_tries,
                       help=f"empty getJob tries before a pilot exits (default {DEFAULTS.pilot_tries})")
    model.add_argument("--pilot-retry", type=positive(float), default=DEFAULTS.pilot_retry,
                       help=f"seconds between two getJob tries (default {DEFAULTS.pilot_retry:g})")
    model.add_argument("--walltime", type=positive(float), default=DEFAULTS.walltime,
                       help=f"pilot wall-time limit, seconds (default {DEFAULTS.walltime:g})")
    model.add_argument("--seed", type=int, default=DEFAULTS.seed, help=f"random seed (default {DEFAULTS.seed})")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    model = Model(slots=args.slots, queue_delay=args.queue_delay, cycle=args.cycle,
                  status_interval=args.status_interval, pilot_tries=args.pilot_tries, pilot_retry=args.pilot_retry,
                  walltime=args.walltime, seed=args.seed)
    try:
        delay_sampler(model.queue_delay, None)
        jobs = read_trace(args.trace)
        policies = [make_policy(name, model.cycle, model.slots) for name in args.policy or BUILTIN]
    except (ValueError, TraceError, PolicyError) as exc:
        print(f"apf replay: {exc}", file=sys.stderr)
        return 2
    print(f"apf replay: {len(jobs)} jobs over {jobs[-1].submit / 86400:.1f} days, {len(policies)} policies",
          file=sys.stderr)
    results = [replay(jobs, model, policy, timeline=bool(args.plot), progress=True) for policy in policies]
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
