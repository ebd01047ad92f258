"""The factory: queues, shared status, credentials and other services in one process."""

from __future__ import annotations

import logging
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable
from importlib import metadata

from autopyfactory import __version__, memory, services
from autopyfactory.config import ConfigError, FactoryConfig, Problem, load
from autopyfactory.context import FactoryContext
from autopyfactory.credentials import CredentialService
from autopyfactory.cycles import CycleRunner
from autopyfactory.interfaces import MonitorPlugin
from autopyfactory.queue import APFQueue, FactoryPilots, Pause, build_chain
from autopyfactory.records import CycleRecord
from autopyfactory.status import StatusService
from autopyfactory.timefmt import iso

log = logging.getLogger(__name__)

LOOK_EVERY = 1.0  # seconds between the main loop's looks at every queue (pauses that end, dead queues)

SUBMIT_GRACE = 10.0  # seconds beyond a submit plugin's own timeout that a stopping queue is waited for


class Factory:
    """Every part of one factory process, built and wired here; see ``FactoryView`` for what others read."""

    config: FactoryConfig  # in force; replaced by a reload
    started: float  # epoch seconds
    version: str
    context: FactoryContext  # what plugins get
    credentials: CredentialService
    status: StatusService  # one poller per status endpoint
    pilots: FactoryPilots  # maxperfactory.maximum across queues
    monitors: dict[str, MonitorPlugin]
    queues: dict[str, APFQueue]
    listeners: list[Callable[[APFQueue, CycleRecord], None]]  # called after every cycle of every queue
    services: list  # start()/stop() beside the queues: web server, log cleaner, persistence
    last_reload: dict | None  # outcome of the last reload, for the status page and the admin API
    reload_hooks: list[Callable[[], None]]  # run before a requested reload (the daemon reopens its logs)

    def __init__(self, config: FactoryConfig):
        """The factory of a validated config, with the plugins it was validated with."""
        self.config = config
        self.started = time.time()
        self.version = __version__
        self.context = FactoryContext(config)
        self.credentials = CredentialService(self.context)
        self.context.credentials = self.credentials
        self.status = StatusService(self.context)
        self.pilots = FactoryPilots(config.get("maxperfactory.maximum"), config.get("maxperfactory.lastgood"))
        self.runner = CycleRunner()  # the threads that run every queue's cycles
        self.monitors = {
            name: config.registry.get("monitor", section.get("monitorplugin"))(section, self.context)
            for name, section in config.monitor.items()
        }
        # replaced, never changed in place: the web server, metrics and alarms iterate it
        # from their own threads while queues start, stop and reload
        self.queues = {}
        extra = services.build(self)
        self.services = extra.running
        self.context.store = extra.store  # before any queue starts: queues restore from it
        self.listeners = [self._tell_monitors, *extra.cycle_listeners]
        self.config_listeners = extra.config_listeners  # called after start and every applied reload
        self.credentials.listeners.extend(extra.credential_listeners)
        self.last_reload = None
        self.reload_hooks = []
        self._stopping = threading.Event()
        self._reload_lock = threading.RLock()
        self._reload_requested = threading.Event()
        self._dump_requested = threading.Event()
        self._next_reconfig: float | None = None
        # stopped queues whose submission outlived the wait: their successor starts when it ends
        self._waiting: dict[str, APFQueue] = {}
        self._deferred: dict[str, tuple] = {}  # name -> (config, pause, old instance) not started yet
        self._draining: dict[str, Pause] = {}  # queues gone from CRIC: drained, stopped once empty

    @property
    def store(self):
        """The persistence store (persistence.Store), or None without one."""
        return self.context.store

    # ------------------------------------------------------------ life cycle
    def start(self, cycles: int | None = None) -> None:
        self.credentials.start()
        for monitor in self.monitors.values():
            monitor.start()
        for service in self.services:
            service.start()
        built: dict[str, APFQueue] = {}
        with self.status.deferred_start(), self._reload_lock:  # every queue registered before the first query
            for qconfig in self.config.enabled_queues.values():
                try:
                    built[qconfig.name] = self._build_queue(qconfig)
                except Exception as exc:  # one queue that cannot be set up never stops the others
                    log.exception("queue %s cannot be set up", qconfig.name)
                    self.config.invalid[qconfig.name] = [Problem(
                        qconfig.source, qconfig.name, "", f"cannot set up the queue: {type(exc).__name__}: {exc}")]
            # published once: a copy of the growing dict for each queue was quadratic (5,000 queues)
            self.queues = {**self.queues, **built}
            for queue in built.values():
                queue.start(cycles)
        for name in self.config.invalid:
            log.error("queue %s not started: %s", name, "; ".join(str(p) for p in self.config.invalid[name]))
        self._config_checked()
        if not self.queues:
            log.warning("no enabled queues (enablequeues=%s)", self.config.get("enablequeues"))
        log.info("factory %s %s started with %d queue(s): %s", self.config.factory_id,
                 self.version, len(self.queues), ", ".join(self.queues) or "-")

    def start_queue(self, qconfig, cycles: int | None = None, pause: Pause | None = None,
                    replaces: APFQueue | None = None) -> APFQueue:
        """Build and start a queue; ``pause``: the one it had before a reload (else the stored one, if any);
        ``replaces``: the stopped instance it takes over from (a changed queue)."""
        with self._reload_lock:
            queue = self._build_queue(qconfig)
            if pause is not None:
                queue.set_pause(pause)
            if replaces is not None and replaces.last_submission is not None:
                # invariant 2 across instances: plan from a batch status newer than the old one's submission
                queue.last_submission = max(queue.last_submission or 0.0, replaces.last_submission)
            if replaces is not None:  # invariant 8 across instances: the pilots it submitted stay counted
                queue.ledger.take_over(replaces.ledger)
                queue.last_good_batch = replaces.last_good_batch or queue.last_good_batch
            self.queues = {**self.queues, queue.name: queue}
            queue.start(cycles)
            return queue

    def _build_queue(self, qconfig) -> APFQueue:
        return APFQueue(qconfig, self.context, self.status, self.pilots, self.runner, self.listeners)

    def stop_queue(self, name: str, timeout: float = 10.0, replaced: bool = False) -> APFQueue:
        """Stop a queue; it is out of ``queues`` only once it can submit nothing any more.

        A submission under way is waited for, bounded by the submit plugin's own
        timeout (a reload must never let two instances of one queue submit).
        ``replaced``: a new instance follows, which keeps the pilots in flight counted.
        """
        with self._reload_lock:
            queue = self.queues[name]
            queue.stop()
            queue.join(timeout)
            if queue.alive:
                bound = queue.submit_timeout + SUBMIT_GRACE
                log.warning("queue %s: waiting up to %.0fs for its submission under way", name, bound)
                if not queue.wait_submission(bound):
                    log.error("queue %s: submission still under way after %.0fs; the queue stays stopped "
                              "until it ends", name, bound)
                    self._waiting[name] = queue
            self.queues = {n: q for n, q in self.queues.items() if n != name}
            if not replaced:
                self.pilots.remove(name)
            remaining = [q.config for q in self.queues.values()]
            self.status.release("wmsstatus", queue.config, remaining)
            self.status.release("batchstatus", queue.config, remaining)
            return queue

    def wait(self) -> None:
        """Until stop() is called, or every queue has run its --cycles.

        The waiting thread (the daemon's main thread) also carries out what
        signal handlers ask for: reloads, thread dumps, periodic re-reads.
        """
        interval = self.config.get("config.reconfig.interval")
        self._next_reconfig = time.time() + interval if interval else None
        next_trim = time.monotonic() + memory.TRIM_EVERY
        next_look = 0.0
        while not self._stopping.is_set():
            if self._dump_requested.is_set():
                self._dump_requested.clear()
                self.dump_threads()
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                for hook in self.reload_hooks:
                    try:
                        hook()
                    except Exception:
                        log.exception("reload hook %s failed", hook)
                self.reload()
            if self._next_reconfig is not None and time.time() >= self._next_reconfig:
                log.info("config.reconfig.interval: re-reading the configuration")
                self.reload()
            now = time.time()
            if now >= next_look:  # every queue once a second (five times: 10 % of py-spy's steady samples at 2,000 queues)
                next_look = now + LOOK_EVERY
                with self._reload_lock:
                    for queue in self.queues.values():  # at --until, not at the queue's next cycle
                        pause = queue.pause  # only a due pause costs more than a look
                        if pause is not None and pause.until is not None and pause.until <= now:
                            queue.end_pause_when_due(now)
                if not self.supervise():
                    return
            if time.monotonic() >= next_trim:
                memory.trim()
                next_trim = time.monotonic() + memory.TRIM_EVERY
            self._stopping.wait(0.2)

    def supervise(self) -> bool:
        """Restart queue threads that died, once their backoff is over; False when no queue
        has anything left to do (every one ran its --cycles)."""
        now = time.time()
        with self._reload_lock:
            for name, old in list(self._waiting.items()):
                if old.wait_submission(0):
                    del self._waiting[name]
                    deferred = self._deferred.pop(name, None)
                    if deferred is not None:
                        log.info("queue %s: its old instance's submission ended; starting the new one", name)
                        self.start_queue(deferred[0], pause=deferred[1], replaces=old)
            self._stop_drained()
            queues = list(self.queues.values())
            for queue in queues:
                if queue.died and not queue.stopping and not queue.alive and now >= (queue.restart_due or 0):
                    queue.restart()
        return not queues or any(q.alive or q.died for q in queues)

    def _stop_drained(self) -> None:
        """Stop each queue gone from CRIC once its batch status shows no pilot pending or running."""
        for name in list(self._draining):
            queue = self.queues.get(name)
            record = queue.last_record if queue is not None else None
            batch = record.batch if record is not None else None
            if queue is not None and (batch is None or batch.get("pending") or batch.get("running")):
                continue
            del self._draining[name]
            if queue is not None:
                log.info("queue %s: gone from CRIC and drained (no pilot pending or running): stopped", name)
                self.stop_queue(name)

    def request_reload(self) -> None:
        """Ask the waiting thread to reload (safe to call from a signal handler)."""
        self._reload_requested.set()

    def request_dump(self) -> None:
        """Ask the waiting thread to log every thread's stack (SIGUSR1)."""
        self._dump_requested.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every thread; a cycle under way finishes its submission first."""
        self._stopping.set()
        with self._reload_lock:  # a reload under way (admin API) finishes first
            queues = dict(self.queues)
        for queue in queues.values():
            queue.stop()
        deadline = time.time() + timeout
        for queue in queues.values():
            queue.join(max(0.1, deadline - time.time()))
        late = [name for name, queue in queues.items() if queue.alive]
        if late:
            log.warning("queue thread(s) still busy after %.0fs, leaving them: %s", timeout, ", ".join(late))
        self.runner.stop()
        self._end_local_pilots(queues)
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception:
                log.exception("stopping %s failed", service)
        self.status.stop(max(0.1, deadline - time.time()))
        self.credentials.stop()
        for monitor in self.monitors.values():
            monitor.stop()
        self.context.close()
        log.info("factory %s stopped", self.config.factory_id)

    def _end_local_pilots(self, queues: dict[str, APFQueue]) -> None:
        """The Local batch system ends with the factory: its pilots end now and are stored (no orphans)."""
        batch = self.context.existing("localbatch")
        if batch is None:
            return
        batch.close()
        for queue in queues.values():
            if queue.store is not None:
                info = batch.status([queue.batch_key], self.context.factory_id).get(queue.batch_key)
                if info is not None:
                    queue.store.record_finished(queue.name, info.finished)

    def request_stop(self) -> None:
        self._stopping.set()

    # ------------------------------------------------------------ reload
    def reload(self, path: str | None = None) -> list[Problem]:
        """Read the configuration again and apply it live; [] means it was applied.

        Queues whose effective keys (``QueueConfig.raw``) are unchanged keep
        running untouched (same thread, same counters); removed queues stop,
        added ones start, changed ones restart. A queue whose new section has
        errors is left as it was (running its old section, or not started) and
        is critical; an error outside every queue section rejects the new config
        whole: the old one stays in force. Plugins are discovered
        again, so new drop-ins become usable. The outcome is kept in
        ``last_reload``.
        """
        path = path or self.config.path
        if self._stopping.is_set():
            return [Problem(path, "", "", "the factory is stopping: not reloading")]
        started = time.time()
        # read outside the lock: a remote queueConf may take up to config.remote.timeout, and
        # stopping, the web pages and the queues must not wait for it (stopping cancels it)
        try:
            new, problems = load(path, partial=True, cancel=self._stopping), []
        except ConfigError as exc:
            new, problems = None, list(exc.problems)
        except Exception as exc:  # a reload must never take the running factory down
            new, problems = None, [Problem(path, "", "", f"reload failed: {type(exc).__name__}: {exc}")]
        with self._reload_lock:
            if self._stopping.is_set():
                return [Problem(path, "", "", "the factory is stopping: not reloading")]
            interval = self.config.get("config.reconfig.interval")
            if new is not None:
                try:
                    problems = self._probe(new)
                except Exception as exc:
                    problems = [Problem(path, "", "", f"reload failed: {type(exc).__name__}: {exc}")]
            if problems:
                for problem in problems:
                    log.error("reload rejected, old configuration stays in force: %s", problem)
                self.last_reload = {"time": started, "ok": False, "path": path,
                                    "problems": [str(p) for p in problems]}
            else:
                assert new is not None
                for warning in new.stale:
                    log.warning("config: %s", warning)
                self.last_reload = self._apply(new, started)
                interval = new.get("config.reconfig.interval")
            self._next_reconfig = time.time() + interval if interval else None
            return problems

    def _probe(self, new: FactoryConfig) -> list[Problem]:
        """Build (without starting) what the new config needs, to reject it before touching anything."""
        problems: list[Problem] = []
        if new.factory_id != self.config.factory_id:
            problems.append(Problem(new.path, "Factory", "factoryId", (
                f"changed from {self.config.factory_id!r} to {new.factory_id!r}: it tags every pilot, so it"
                " changes only at a restart (live, the running pilots would stop counting as this factory's"
                " and be submitted again)")))
        registry = new.registry
        probe = FactoryContext(new)
        for name, qconfig in new.enabled_queues.items():
            old = self.queues.get(name)
            if old is not None and old.config.raw == qconfig.raw:
                continue
            try:
                build_chain(registry, qconfig, new.factory)
                registry.get("batchsubmit", qconfig.values["batchsubmitplugin"])(qconfig, probe)
                for kind in ("wmsstatus", "batchstatus"):
                    plugin_cls = registry.get(kind, qconfig.values[f"{kind}plugin"])
                    plugin_cls.endpoint(qconfig.plugin_options(plugin_cls))
            except Exception as exc:  # this queue is invalid: the others still apply
                new.invalid[name] = [Problem(qconfig.source, name, "",
                                             f"cannot set up the queue: {type(exc).__name__}: {exc}")]
        for name, section in new.auth.items():
            try:
                registry.get("auth", section.get("plugin"))
            except Exception as exc:
                problems.append(Problem(section.source, name, "plugin", str(exc)))
        for name, section in new.monitor.items():
            try:
                registry.get("monitor", section.get("monitorplugin"))
            except Exception as exc:
                problems.append(Problem(section.source, name, "monitorplugin", str(exc)))
        return problems

    def _apply(self, new: FactoryConfig, started: float) -> dict:
        old_config = self.config
        wanted = new.enabled_queues
        # a running queue whose new section is invalid keeps running as it was (shown critical)
        kept = [name for name in self.queues if name in new.invalid and name in new.queues
                and new.queues[name].enabled and new.get("enablequeues")]
        removed = [name for name in self.queues if name not in wanted and name not in kept]
        for name in [name for name in self._draining if name in wanted]:  # back in CRIC: no longer drained
            if self.queues[name].pause is self._draining.pop(name):
                self.queues[name].pause = None
            log.info("reload: queue %s is back in CRIC: submitting again", name)
        # gone from CRIC (and from every queue file): drained, then stopped once empty (_stop_drained)
        for name in [name for name in removed if self.queues[name].config.source.startswith("cric:")
                     and name not in new.queues]:
            removed.remove(name)
            if name not in self._draining:
                drain = Pause("drained", "gone from CRIC: its pilots that have not started are removed, "
                                         "the queue stops once none is left")
                self._draining[name] = self.queues[name].pause = drain  # not stored: it ends with the queue
                log.info("reload: queue %s is gone from CRIC: draining it", name)
        added = [name for name in wanted if name not in self.queues]
        changed = [name for name in wanted if name in self.queues and self.queues[name].config.raw != wanted[name].raw]
        unchanged = [name for name in wanted if name in self.queues and name not in changed]

        pauses = {name: self.queues[name].pause for name in changed}
        stopped = {}
        for name in removed + changed:
            log.info("reload: stopping queue %s (%s)", name, "removed" if name in removed else "changed")
            stopped[name] = self.stop_queue(name, replaced=name in changed)
        for name in removed:
            self._deferred.pop(name, None)
        self.config = new
        self.context.config = new
        self.pilots.maximum = new.get("maxperfactory.maximum")
        self.pilots.lastgood = new.get("maxperfactory.lastgood")
        self.credentials.reconfigure(new.auth)
        self._reconfigure_monitors(new)
        for name in added + changed:
            log.info("reload: starting queue %s (%s)", name, "added" if name in added else "changed")
            # an operator's pause outlives a config edit
            old = stopped.get(name) or self._deferred.get(name, (None, None, None))[2]
            if name in self._waiting or name in self._deferred:
                log.warning("reload: queue %s starts once its old instance's submission ends", name)
                self._deferred[name] = (wanted[name], pauses.get(name), old)
                continue
            self.start_queue(wanted[name], pause=pauses.get(name), replaces=old)
        notes = []
        for key in ("logserver.enabled", "logserver.port", "logserver.bind", "persistence.dbpath",
                    "persistence.flushinterval"):
            if old_config.get(key, None) != new.get(key, None):
                notes.append(f"{key} changed: takes effect at the next restart")
        for name, queue in self.queues.items():
            queue.config_error = new.invalid_reason(name, "previous configuration runs on") \
                if name in kept else None
        for name, problems in new.invalid.items():
            log.error("reload: queue %s %s: %s", name, "keeps its previous configuration" if name in kept
                      else "not started", "; ".join(str(p) for p in problems))
        self._config_checked()
        for note in notes:
            log.warning("reload: %s", note)
        for warning in new.warnings:
            log.warning("config: %s", warning)
        log.info("reload applied: added %s, removed %s, changed %s, unchanged %s",
                 added or "-", removed or "-", changed or "-", unchanged or "-")
        return {"time": started, "ok": True, "path": new.path, "problems": [],
                "warnings": [str(w) for w in new.warnings], "notes": notes,
                "added": added, "removed": removed, "changed": changed, "unchanged": unchanged,
                **({"draining": sorted(self._draining)} if self._draining else {}),
                "invalid": [str(p) for problems in new.invalid.values() for p in problems]}

    def _config_checked(self) -> None:
        for listener in self.config_listeners:
            try:
                listener()
            except Exception:
                log.exception("config listener %s failed", listener)

    def _reconfigure_monitors(self, new: FactoryConfig) -> None:
        monitors = {}
        for name, section in new.monitor.items():
            current = self.monitors.get(name)
            if current is not None and current.section.raw == section.raw:
                monitors[name] = current
                continue
            monitor = new.registry.get("monitor", section.get("monitorplugin"))(section, self.context)
            monitor.start()
            monitors[name] = monitor
        for name, monitor in self.monitors.items():
            if monitors.get(name) is not monitor:
                try:
                    monitor.stop()
                except Exception:
                    log.exception("stopping monitor %s failed", name)
        self.monitors = monitors

    # ------------------------------------------------------------ diagnostics
    def dump_threads(self) -> str:
        """Log (and return) every thread's name and stack: what SIGUSR1 asks for."""
        text = self.thread_dump()
        log.warning("%s", text)
        return text

    def thread_dump(self) -> str:
        """Every thread's name and stack, each queue's and status endpoint's counters (not logged)."""
        frames = sys._current_frames()
        lines = [f"thread dump: {threading.active_count()} thread(s)"]
        for thread in threading.enumerate():
            lines.append(f"--- thread {thread.name} (ident {thread.ident}, daemon={thread.daemon})")
            frame = frames.get(thread.ident or -1)
            if frame is not None:
                lines.extend(line.rstrip() for line in traceback.format_stack(frame))
        busy = self.runner.busy()
        lines.append(f"cycle workers: {self.runner.threads}, {len(busy)} in a cycle"
                     + "".join(f"; {name} for {seconds:.1f}s" for name, seconds in busy))
        for name, queue in sorted(self.queues.items()):
            lines.append(f"queue {name}: alive={queue.alive} cycles={queue.cycles} "
                         f"submitted={queue.submitted_total} errors={queue.errors_total} paused={queue.paused}")
        for health in self.status.health():
            lines.append(f"status {health['kind']} {health['endpoint']}: calls={health['calls']} "
                         f"failures={health['consecutive_failures']} age={health['age']}")
        return "\n".join(lines)

    def debug_info(self) -> dict:
        """What a remote operator needs to tell what runs: versions, config sources, endpoints, store size."""
        config = self.config
        sources = {"factory_conf": config.path, "auth_conf": config.get("authConf", None) or None,
                   "monitor_conf": config.get("monitorConf", None) or None,
                   "queues": sorted({src for q in config.queues.values() for src in q.source.split(" + ")})}
        store = self.store
        store_info = None
        if store is not None:
            size = sum(os.path.getsize(store.path + suffix) for suffix in ("", "-wal", "-shm")
                       if os.path.exists(store.path + suffix))
            store_info = {"path": store.path, "bytes": size, "usable": store.usable, "problem": store.problem}
        return {
            **self.summary(),
            "versions": versions(),
            "pid": os.getpid(),
            "threads": threading.active_count(),
            "config_sources": sources,
            "endpoints": [{**{key: h[key] for key in ("kind", "plugin", "endpoint", "queues", "calls",
                                                      "consecutive_failures", "last_error")},
                           "last_success": iso(h["last_success"])} for h in self.status.health()],
            "store": store_info,
        }

    # ------------------------------------------------------------ hooks
    def _tell_monitors(self, queue: APFQueue, record: CycleRecord) -> None:
        batch = queue.batch_seen
        for section in queue.config.values.get("monitorsection", []):
            monitor = self.monitors.get(section)
            if monitor is not None:
                monitor.cycle_done(queue.config, record)
                if batch is not None:
                    monitor.pilots_seen(queue.config, batch)

    def summary(self) -> dict:
        last = max((r.started for q in self.queues.values() if (r := q.last_record)), default=None)
        return {
            "factory_id": self.config.factory_id,
            "version": self.version,
            "started": iso(self.started),
            "last_cycle": iso(last) if last else None,
            "queue_count": len(self.queues),
        }



# the libraries whose versions matter when a site reports a problem
REPORTED_LIBRARIES = ("htcondor", "requests", "pluggy", "python-daemon", "jinja2", "prometheus-client", "waitress")


def versions() -> dict[str, str | None]:
    """This factory's, Python's and its main libraries' versions (None: not installed)."""
    found: dict[str, str | None] = {"autopyfactory": __version__, "python": platform.python_version()}
    for name in REPORTED_LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def build_factory(path: str) -> Factory:
    """The factory of ``factory.conf`` at ``path``, not started: validated (ConfigError
    otherwise) and running the plugins it was validated with."""
    return Factory(load(path))
