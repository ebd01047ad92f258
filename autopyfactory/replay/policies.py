"""Provisioning policies behind one interface: ``decide(info) -> n`` once per cycle.

``n > 0`` submits n pilots, ``n < 0`` removes -n pilots that have not started.
``info`` is the ``SchedInfo`` a live queue's chain gets, built from the last
status poll.

- ``apf-default``, ``recommended`` and ``queue:<queues.conf>:<section>`` are
  scheduler chains: the project's real plugin classes, built from a validated
  queues.conf section and run by ``queue.run_chain`` with the hard ceilings the
  cycle applies after it (``queue.cycle_ceiling``, ``apfqueue.maxpending``), as in a live queue.
- ``harvester``, ``glideinwms`` and ``cobald`` are written from each peer's
  documented rule (sources in docs/provisioning.md); they keep their own
  state between cycles, as those systems do.
"""

from __future__ import annotations

import configparser
import math
import os
import tempfile
from importlib import resources

from autopyfactory.config import ConfigError, FactoryConfig, QueueConfig, load
from autopyfactory.interfaces import SchedInfo
from autopyfactory.ledger import pending_ceiling
from autopyfactory.queue import build_chain, cycle_ceiling, run_chain
from autopyfactory.records import SchedStep
from autopyfactory.replay.model import Lifecycle, Model

BUILTIN = ("apf-default", "harvester", "glideinwms", "cobald", "recommended")
# recommended's ingredients one at a time (docs/provisioning.md, "Ablation"), and its first version
ABLATION = ("ablation-ready", "ablation-idle", "ablation-removal", "ablation-idle-recommended", "recommended")
CHAINS = ("apf-default", "recommended", *ABLATION[:-1], "recommended-v1")


class PolicyError(ValueError):
    """A policy name or chain that cannot be used; the message says why."""


class ChainPolicy:
    """A queue's scheduler chain, run as a live queue runs it."""

    def __init__(self, name: str, config: FactoryConfig, queue: QueueConfig):
        self.name = name
        self.queue = queue
        self.schedulers = build_chain(config.registry, queue, config.factory)
        self.last_steps: list[SchedStep] = []

    def decide(self, info: SchedInfo) -> int:
        self.last_steps = []
        n = run_chain(self.schedulers, info, self.last_steps)
        n, _ = cycle_ceiling(n, self.queue)
        pending = info.batch.pending if info.batch is not None else 0
        n, _ = pending_ceiling(n, pending, self.queue.values.get("apfqueue.maxpending"))
        return n


def load_chain(name: str, path: str, section: str) -> ChainPolicy:
    """The chain of ``[section]`` in a queues.conf (or a factory.conf naming queue files)."""
    if not os.path.isfile(path):
        raise PolicyError(f"{name}: no such file {path!r}")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise PolicyError(f"{name}: {path}: {exc}") from None
    try:
        if parser.has_section("Factory"):
            config = load(path)
        else:  # a bare queues.conf: read it through a factory.conf that names only it
            with tempfile.TemporaryDirectory() as tmp:
                factory = os.path.join(tmp, "factory.conf")
                with open(factory, "w") as handle:
                    handle.write(f"[Factory]\nfactoryId = replay\nqueueConf = {os.path.abspath(path)}\n"
                                 "plugindirs =\n")
                config = load(factory)
    except ConfigError as exc:
        raise PolicyError("\n".join(str(p) for p in exc.problems)) from None
    if section not in config.queues:
        raise PolicyError(f"{name}: {path}: no section [{section}] (expected one of {', '.join(config.queues)})")
    return ChainPolicy(name, config, config.queues[section])


def builtin_chains_path() -> str:
    return str(resources.files("autopyfactory.replay").joinpath("chains", "factory.conf"))


def make_policy(name: str, model: Model):
    """A fresh policy (its state starts empty) by its name, for a run of ``model``."""
    if name in CHAINS:
        return load_chain(name, builtin_chains_path(), name)
    if name.startswith("queue:"):
        path, _, section = name.removeprefix("queue:").rpartition(":")
        if not path or not section:
            raise PolicyError(f"{name}: expected queue:<queues.conf>:<section>")
        return load_chain(name, path, section)
    peers = {"harvester": Harvester, "glideinwms": GlideinWMS, "cobald": Cobald}
    if name in peers:
        return peers[name](model)
    raise PolicyError(f"unknown policy {name!r} (expected one of {', '.join(BUILTIN + CHAINS[2:])} or "
                      "queue:<queues.conf>:<section>)")


# ---------------------------------------------------------------- peers


class Harvester:
    """PanDA Harvester's worker adjuster in pull mode.

    New workers fill the queue up to ``n_queue_limit`` = activated jobs x
    ``factor`` (at most ``queue_limit_max``), never beyond ``max_workers``
    queued + running, at most ``max_new_per_cycle`` a cycle; with no job
    statistics one worker is kept queued.
    """

    name = "harvester"

    def __init__(self, model: Model, factor: float = 1.0, queue_limit_max: int = 100, max_new_per_cycle: int = 100):
        self.factor, self.queue_limit_max = factor, queue_limit_max
        self.max_workers, self.max_new_per_cycle = model.slots // model.pilot_cores, max_new_per_cycle

    def decide(self, info: SchedInfo) -> int:
        if info.batch is None:
            return 0
        queued, running = info.batch.pending, info.batch.running
        if info.wms is None:
            return 1 if queued == 0 else 0
        limit = min(self.queue_limit_max, math.ceil(info.wms.ready * self.factor))
        n = min(limit - queued, self.max_workers - queued - running, self.max_new_per_cycle)
        return max(0, n)


class GlideinWMS:
    """GlideinWMS frontend + factory, one entry, and glideins that live as GlideinWMS's do.

    Frontend: idle jobs ask for ``min_idle`` idle glideins: the idle jobs not
    matched by idle glideins (in glideins: job cores over the glidein's cores),
    divided by the ramp-up attenuation (3), plus a reserve (5) when jobs have
    been idle for more than one cycle, at most ``max_idle`` (100) idle
    glideins; past the curb (half of max_idle) the request is halved.
    Factory: keeps ``min_idle`` glideins idle, at most ``max_submit`` (100)
    submissions a cycle; idle glideins are removed once the request has been
    0 for ``remove_after`` (5) cycles. A glidein is a partitionable slot of
    the model's pilot cores; it waits up to GLIDEIN_Max_Idle (1200 s) for its
    first job and GLIDEIN_Max_Tail (400 s) for each next one, matched every
    negotiation cycle (60 s), and takes work until its wall time (no retire
    time by default). Sources: docs/provisioning.md, "Policies".
    """

    name = "glideinwms"
    max_idle_s, max_tail_s, negotiation_s = 1200.0, 400.0, 60.0

    def __init__(self, model: Model, ramp_up_attenuation: float = 3.0, reserve_idle: int = 5,
                 max_idle: int = 100, max_submit: int = 100, remove_after: int = 5):
        self.attenuation, self.reserve = ramp_up_attenuation, reserve_idle
        self.max_idle, self.curb = max_idle, max_idle // 2
        self.max_submit, self.remove_after = max_submit, remove_after
        self.cores = model.pilot_cores
        self.idle_since: int | None = None  # cycles the jobs have been waiting
        self.zero_cycles = 0
        self.pilot = Lifecycle(first_tries=math.ceil(self.max_idle_s / self.negotiation_s) + 1,
                               tries=math.ceil(self.max_tail_s / self.negotiation_s) + 1,
                               retry=self.negotiation_s, timefloor=math.inf, partitionable=True)

    def decide(self, info: SchedInfo) -> int:
        if info.wms is None or info.batch is None:
            return 0
        idle_jobs, idle_glideins = math.ceil(info.wms.ready / self.cores), info.batch.pending
        self.idle_since = (self.idle_since or 0) + 1 if idle_jobs > 0 else None
        if idle_jobs == 0:
            min_idle = 0
        else:
            min_idle = math.ceil(max(0, idle_jobs - idle_glideins) / self.attenuation) + idle_glideins
            if self.idle_since and self.idle_since > 1:
                min_idle += self.reserve
            min_idle = min(min_idle, self.max_idle)
            if idle_glideins > self.curb:
                min_idle = idle_glideins + (min_idle - idle_glideins) // 2
        if min_idle == 0:
            self.zero_cycles += 1
            if self.zero_cycles >= self.remove_after and idle_glideins > 0:
                return -idle_glideins
            return 0
        self.zero_cycles = 0
        return max(0, min(self.max_submit, min_idle - idle_glideins))


class Cobald:
    """COBalD's LinearController driving a TARDIS pool of drones, in cores.

    Controller (``LinearController`` low_utilisation 0.9, high_allocation
    0.9, rate 1, then ``Limiter`` minimum 1, the TARDIS example pipeline): below
    0.9 utilisation the demand drops by ``rate`` cores per second of the cycle,
    above 0.9 allocation it rises by as much; never below 1 core nor above the
    pool. Pool (COBalD's ``FactoryPool`` of TARDIS drones): supply is the cores
    of the drones that are up — a booting (pending) drone supplies 0, a
    released one 0; utilisation and allocation are the busy share of the
    cores supplied, 1.0 with none. When supply is above demand, drones are
    released until the drones' demand (cores each) fits: booting ones first
    (they supply nothing; removed), then the least used running ones (drained:
    no new work, they exit when their jobs end); otherwise new drones are
    asked for the demand not yet covered. A drone is a partitionable slot of
    the model's pilot cores that lives until it is drained or reaches its wall
    time; jobs reach it every negotiation cycle (60 s).
    """

    name = "cobald"

    def __init__(self, model: Model, low_utilisation: float = 0.9, high_allocation: float = 0.9,
                 rate: float = 1.0, minimum: float = 1.0):
        self.low, self.high, self.step, self.minimum = low_utilisation, high_allocation, rate * model.cycle, minimum
        self.cores, self.maximum = model.pilot_cores, float(model.slots)
        self.demand = minimum
        self.draining = 0  # set by the replay before each cycle: drones released and not yet gone
        self.drain = 0  # drones to drain this cycle (read by the replay)
        self.pilot = Lifecycle(first_tries=math.ceil(model.walltime / 60) + 2, tries=math.ceil(model.walltime / 60) + 2,
                               retry=60.0, timefloor=math.inf, partitionable=True)

    def decide(self, info: SchedInfo) -> int:
        self.drain = 0
        if info.wms is None or info.batch is None:
            return 0
        booting, up = info.batch.pending, max(0, info.batch.running - self.draining)
        supply = up * self.cores
        use = min(info.wms.running, supply) / supply if supply else 1.0
        if use < self.low:
            self.demand -= self.step
        elif use > self.high:
            self.demand += self.step
        self.demand = min(self.maximum, max(self.minimum, self.demand))
        children = (booting + up) * self.cores
        if supply > self.demand:
            excess = children - self.demand
            release_booting = min(booting, int(excess // self.cores))
            excess -= release_booting * self.cores
            self.drain = min(up, int(excess // self.cores))
            return -release_booting
        return max(0, math.ceil((self.demand - children) / self.cores))
