"""``apf status | config | audit | history | log`` without the web server: the configuration files and the local store.

With ``logserver.enabled = False`` (or ``--local``) there is no factory to ask:
these commands read factory.conf and the files it names, and the persistence
store (``persistence.dbpath``) the factory writes after every cycle, opened
read-only. Every answer says which source answered.

Health is the one definition (autopyfactory.health) applied to what the
store keeps: each queue's last cycle (its WMS and batch numbers, holds and
errors), its pause or drain, the pilots that ended, the last credential
check, as of ``persistence.flushinterval`` ago (the factory writes its cycles
that often). What only the running process knows (an endpoint's breaker, a queue
thread that died) is not there; a factory that stopped shows as every
queue's last cycle being overdue, and as a factory problem.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from dataclasses import replace
from types import SimpleNamespace

from autopyfactory import __version__, journal
from autopyfactory.cli import load_or_report
from autopyfactory.cli.control import (
    ControlError,
    check_code,
    format_audit,
    format_config,
    format_history,
    format_status,
    journal_log,
)
from autopyfactory.config import FactoryConfig, QueueConfig
from autopyfactory.health import OVERDUE_CYCLES, queue_health
from autopyfactory.info import CredentialStatus
from autopyfactory.persistence import Store, StoreUnusable
from autopyfactory.queue import Pause, fault_backoff
from autopyfactory.timefmt import iso

FINISHED_LOOKED_AT = 1000  # latest ended pilots read to judge the fault backoff


def source_of(args: argparse.Namespace) -> str:
    """Why the local files answer, in the operator's words."""
    if getattr(args, "local", False):
        return "--local"
    return f"logserver.enabled = False in {args.conf}: the factory has no web server to ask"


def load(args: argparse.Namespace, code: int) -> FactoryConfig:
    config = load_or_report(args.conf)
    if config is None:
        raise ControlError(f"cannot read the configuration {args.conf} (problems above)", code)
    return config


def open_store(config: FactoryConfig, code: int) -> Store:
    try:
        return Store(config.persistence_path, readonly=True)
    except StoreUnusable as exc:
        raise ControlError(f"the local store cannot answer: {exc}", code) from None


class _StoredCredentials:
    """A profile's last check as the store has it, its time left counted down since."""

    def __init__(self, store: Store, now: float):
        self.store = store
        self.now = now

    def status(self, profile: str) -> CredentialStatus | None:
        found = self.store.last_credential(profile)
        if found is None:
            return None
        state, when = found
        if state.seconds_left is None:
            return state
        return replace(state, seconds_left=max(0.0, state.seconds_left - max(0.0, self.now - when)))


class StoredQueue:
    """A queue as its stored records show it: what autopyfactory.health reads of a running one."""

    started = True
    alive = True
    stopping = False
    ran_its_cycles = False
    died = None

    def __init__(self, qconfig: QueueConfig, config: FactoryConfig, store: Store, now: float):
        self.name = qconfig.name
        self.store = store
        row = store.queue_pause(self.name)
        pause = Pause.restored(row, now)[0] if row else None
        self.pause = pause if pause is not None and (pause.until is None or pause.until > now) else None
        self.fault_backoff = fault_backoff(store.finished(self.name, 0.0, FINISHED_LOOKED_AT), qconfig)
        records = store.recent_cycles(self.name, 1)
        self.last_record = records[0] if records else None
        self.sleep = float(qconfig.values["apfqueue.sleep"])
        self.submitter = SimpleNamespace(credential_profile=_profile(qconfig, config))
        self.context = SimpleNamespace(credentials=_StoredCredentials(store, now))

    def finished_counts(self, since: float) -> dict[str, int] | None:
        return self.store.finished_counts(self.name, since)


def lag(config: FactoryConfig) -> float:
    """How far behind the running factory the store may be: it writes cycles every persistence.flushinterval."""
    return float(config.get("persistence.flushinterval") or 0.0)


def _profile(qconfig: QueueConfig, config: FactoryConfig) -> str | None:
    """The auth.conf profile the queue submits with (its submit plugin's ``proxy``)."""
    try:
        plugin = config.registry.get("batchsubmit", qconfig.values.get("batchsubmitplugin", ""))
    except (KeyError, AttributeError):
        return None
    return qconfig.plugin_options(plugin).get("proxy") or None


def queue_view(qconfig: QueueConfig, config: FactoryConfig, store: Store, now: float) -> dict:
    """The keys of the API's queue view (autopyfactory/web/api.py), from the store."""
    from autopyfactory.web.api import disabled_view

    if not (qconfig.enabled and config.get("enablequeues")):
        return disabled_view(qconfig, config)
    queue = StoredQueue(qconfig, config, store, now)
    health = queue_health(queue, now - lag(config))
    last = queue.last_record
    batch = (last.batch or {}) if last else {}
    finished = store.finished_counts(queue.name, now - 3600)
    state = store.queue_state(queue.name)
    pause = queue.pause
    return {
        "name": queue.name, "enabled": True, "health": health.level, "health_reason": health.reason,
        "wmsqueue": qconfig.wmsqueue, "batchqueue": qconfig.batchqueue,
        **{key: batch.get(key) for key in ("pending", "running", "exiting", "held")},
        "done_1h": finished["done"], "fault_1h": finished["fault"], "empty_1h": finished.get("empty", 0),
        "wms": last.wms if last else None,
        "paused": pause is not None,
        "pause": None if pause is None else {"mode": pause.mode, "reason": pause.reason,
                                             "since": iso(pause.since), "until": iso(pause.until)},
        "fault_backoff": queue.fault_backoff,
        "cycle_count": state.cycles, "submitted_total": state.submitted_total, "errors_total": state.errors_total,
        "last_message": last.message if last else "",
        "last_cycle": last.started_iso if last else None,
        "last_submission": iso(state.last_submission),
    }


def factory_view(config: FactoryConfig, queues: list[dict], store: Store, now: float) -> dict:
    running = [config.queues[q["name"]] for q in queues if q.get("enabled")]
    lasts = [store.recent_cycles(q.name, 1) for q in running]
    latest = max((r[0].started for r in lasts if r), default=None)
    problems = []
    overdue = max((OVERDUE_CYCLES * float(q.values["apfqueue.sleep"]) for q in running), default=0.0) + lag(config)
    if running and (latest is None or now - latest > overdue):
        since = "no queue has run a cycle yet" if latest is None else \
            f"no queue has run a cycle for {now - latest:.0f} s (since {iso(latest)})"
        problems.append(f"{since}: is the factory running? (systemctl status autopyfactory)")
    credentials = []
    for profile in sorted(config.auth):
        found = store.last_credential(profile)
        state = _StoredCredentials(store, now).status(profile) if found else None
        credentials.append({"profile": profile, "ok": bool(state and state.ok),
                            "seconds_left": None if state is None else state.seconds_left,
                            "message": "never checked" if state is None else
                            f"{state.message} (checked {iso(found[1])})".strip()})
    return {"factory_id": config.get("factoryId"), "version": f"{__version__} (this apf)",
            "host": socket.gethostname(), "started": "? (not in the store)", "last_cycle": iso(latest),
            "problems": problems, "credentials": credentials, "endpoints": []}


def status(args: argparse.Namespace) -> int:
    config = load(args, 3)  # the check cannot tell: UNKNOWN
    store = open_store(config, 3)
    try:
        now = time.time()
        if args.queue and args.queue not in config.queues:
            raise ControlError(f"no queue {args.queue} in the configuration {args.conf}", 3)
        names = [args.queue] if args.queue else list(config.queues)
        queues = [queue_view(config.queues[name], config, store, now) for name in names]
        factory = factory_view(config, queues, store, now)
    finally:
        store.close()
    source = {"answered_by": "local", "store": store.path, "config": config.path, "why": source_of(args)}
    if args.json:
        print(json.dumps({"source": source, "factory": factory, "queues": queues}, indent=1))
    else:
        print(format_status(factory, queues))
        print(f"\nanswered from the local store {store.path} and {config.path}, read-only ({source['why']}); "
              "batch and WMS numbers are those of each queue's last cycle")
    return check_code(queues, factory)


def config_(args: argparse.Namespace) -> int:
    from autopyfactory.web.admin import effective_config

    config = load(args, 2)
    data = effective_config(config)
    why = source_of(args)
    if args.json:
        print(json.dumps({"source": {"answered_by": "local", "config": config.path, "why": why}, **data}, indent=1))
    else:
        print(format_config(data, f"# the configuration files as they are now, from {config.path} ({why}); "
                                  "the running factory has them once started or reloaded; secrets and "
                                  "credential paths <redacted>"))
    return 0


def audit(args: argparse.Namespace) -> int:
    config = load(args, 2)
    store = open_store(config, 2)
    try:
        actions = [a.to_dict() for a in store.admin_actions(args.limit)]
    finally:
        store.close()
    if args.json:
        print(json.dumps({"source": {"answered_by": "local", "store": store.path, "why": source_of(args)},
                          "actions": actions}, indent=1))
    else:
        print(format_audit(actions))
        print(f"\nanswered from the local store {store.path}, read-only ({source_of(args)})")
    return 0


def history(args: argparse.Namespace) -> int:
    """A queue's latest cycles as the store has them (the factory writes every cycle there)."""
    from autopyfactory.web.api import cycle_view

    config = load(args, 2)
    if args.queue not in config.queues:
        raise ControlError(f"no queue {args.queue} in the configuration {args.conf}", 1)
    store = open_store(config, 2)
    try:
        cycles = [cycle_view(record) for record in store.recent_cycles(args.queue, max(0, args.cycles))]
    finally:
        store.close()
    if args.json:
        print(json.dumps({"source": {"answered_by": "local", "store": store.path, "why": source_of(args)},
                          "queue": args.queue, "cycles": cycles}, indent=1))
    else:
        print(format_history(args.queue, cycles))
        print(f"\nanswered from the local store {store.path}, read-only ({source_of(args)})")
    return 0


def log(args: argparse.Namespace) -> int:
    """The factory's journal, read here: with no web server nobody can say where else it logs."""
    return journal_log(args.unit or journal.DEFAULT_UNIT, args.lines)


LOCAL = {"status": status, "config": config_, "audit": audit, "history": history, "log": log}
