"""``apf simulate``: run one queue's scheduler chain on given numbers, touching nothing.

No threads, no status queries, no submission: the queue's scheduler plugins
are built from the validated config and fed the numbers from the command
line, then the hard ceilings the real cycle applies after the chain
(``queue.cycle_ceiling`` and ``queue.factory_ceiling``) are applied the same
way, so ``final`` is what a cycle with this status would submit (or, when
negative, how many idle pilots it would ask to remove).

Example::

    $ apf simulate --conf /etc/apf/factory.conf --queue SITE --activated 40 --pending 7 --running 12
    # queue SITE (/etc/apf/queues.conf): activated=40 pending=7 running=12 status=online
    Ready           33  Ready: 33 (40 ready - 0 offset - 7 pending)
    MaxPerCycle     20  MaxPerCycle: 33 capped to 20 (20 max)
    final: 20
"""

from __future__ import annotations

import argparse
import sys
import time

from autopyfactory.cli import load_or_report, number
from autopyfactory.config import FactoryConfig, QueueConfig
from autopyfactory.info import BatchQueueInfo, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo
from autopyfactory.queue import build_chain, cycle_ceiling, factory_ceiling, run_chain
from autopyfactory.records import SchedStep

STATUSES = ("online", "offline", "test")


count = number(int, at_least=0)  # jobs or pilots


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``apf simulate`` on the subcommands of ``apf``."""
    from autopyfactory.cli.daemon import DEFAULT_CONF

    p = sub.add_parser(
        "simulate",
        help="run a queue's scheduler chain on given numbers (nothing is submitted)",
        description="Run one queue's scheduler chain on the given WMS and batch numbers, with no side "
        "effects: one line per scheduler plugin (name, output, message), then 'final: N', the number a "
        "cycle would submit (negative: idle pilots it would ask to remove).",
    )
    p.add_argument("--conf", default=DEFAULT_CONF, help=f"factory.conf (default {DEFAULT_CONF})")
    p.add_argument("--queue", help="queue section (default: the first one)")
    p.add_argument("--activated", type=count, required=True, help="WMS jobs ready to run (PanDA activated)")
    p.add_argument("--pending", type=count, required=True, help="this queue's pilots pending in the batch system")
    p.add_argument("--running", type=count, required=True, help="this queue's pilots running in the batch system")
    p.add_argument("--status", choices=STATUSES, default="online", help="WMS queue status (default online)")
    p.set_defaults(func=main)


class ChainError(Exception):
    """A scheduler plugin raised; the message names it."""


def pick_queue(config: FactoryConfig, name: str | None) -> QueueConfig:
    if not config.queues:
        raise LookupError("no queue sections in the configuration")
    if name is None:
        return next(iter(config.queues.values()))
    if name in config.queues:
        return config.queues[name]
    raise LookupError(f"no queue {name!r} (expected one of {', '.join(config.queues)})")


def simulate(
    config: FactoryConfig,
    queue: QueueConfig,
    activated: int,
    pending: int,
    running: int,
    status: str = "online",
) -> tuple[list[SchedStep], list[str], int]:
    """(one step per scheduler plugin, ceilings applied after the chain, final number)."""
    schedulers = build_chain(config.registry, queue, config.factory)
    info = SchedInfo(
        wms=WMSQueueInfo(ready=activated, status=status),
        batch=BatchQueueInfo(pending=pending, running=running),
        # on its own the queue is the whole factory
        factory_pilots=pending + running,
        now=time.time(),
    )
    steps: list[SchedStep] = []
    try:
        n = run_chain(schedulers, info, steps)
    except Exception as exc:
        raise ChainError(f"scheduler plugin {schedulers[len(steps)].name} failed: {type(exc).__name__}: {exc}") from exc
    # the ceilings the cycle applies after the chain, in its order
    n, per_cycle = cycle_ceiling(n, queue)
    n, per_factory = factory_ceiling(n, config.get("maxperfactory.maximum"), pending + running)
    return steps, [why for why in (per_cycle, per_factory) if why], n


def main(args: argparse.Namespace) -> int:
    config = load_or_report(args.conf)
    if config is None:
        return 2
    try:
        queue = pick_queue(config, args.queue)
    except LookupError as exc:
        print(f"{config.path}: {exc}", file=sys.stderr)
        return 2
    try:
        steps, holds, final = simulate(
            config, queue, args.activated, args.pending, args.running, args.status
        )
    except ChainError as exc:  # a drop-in plugin's bug: say which, do not dump a traceback on the operator
        print(f"queue {queue.name}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. a drop-in plugin that cannot even be built
        print(f"queue {queue.name}: scheduler chain failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    state = "" if queue.enabled else "disabled, "
    print(f"# queue {queue.name} ({state}{queue.source}): activated={args.activated} "
          f"pending={args.pending} running={args.running} status={args.status}")
    width = max([len(step.plugin) for step in steps] + [12])
    for step in steps:
        print(f"{step.plugin:<{width}} {step.n:>5}  {step.message}")
    for why in holds:
        print(f"after the chain: {why}")
    if final < 0:
        room = "" if -final <= args.pending else f", so at most {args.pending} go"
        print(f"after the chain: ask to remove {-final} idle pilots ({args.pending} pending{room}; "
              "running pilots are never removed)")
    print(f"final: {final}")
    return 0
