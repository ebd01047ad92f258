"""The contract of each plugin kind.

A plugin is one class: a subclass of one of the bases below with a ``name``
(what operators write in queues.conf), a ``keys`` table (the config keys it
reads, without their ``<kind>.<name>.`` prefix) and the one or two methods of
its kind. Built-in plugins use exactly these bases; so do drop-ins from
``plugindirs`` and packages registered under the ``autopyfactory`` entry point.

Example drop-in, ``/etc/apf/plugins.d/half.py``::

    from autopyfactory.interfaces import SchedulerPlugin

    class Half(SchedulerPlugin):
        '''Halve the number handed on.'''
        name = "Half"
        def calc(self, n, info):
            return n // 2, f"Half: {n} -> {n // 2}"

and ``schedplugin = Ready, Half`` in queues.conf.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from autopyfactory.info import BatchQueueInfo, CredentialStatus, LivePilot, WMSQueueInfo
from autopyfactory.settings import FactoryConfig, Key, QueueConfig, Section

if TYPE_CHECKING:
    from autopyfactory.context import FactoryContext
    from autopyfactory.records import CycleRecord


class Plugin:
    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    keys: ClassVar[dict[str, Key]] = {}
    # modules the plugin imports that are not core dependencies: {module: how to install it}
    requires: ClassVar[dict[str, str]] = {}

    @classmethod
    def missing(cls) -> list[str]:
        """One sentence per module this plugin needs that cannot be imported here."""
        return [f"the {cls.name} plugin needs the {module} module: {hint}"
                for module, hint in cls.requires.items() if importlib.util.find_spec(module) is None]

    @classmethod
    def key_prefix(cls) -> str:
        """Prefix of this plugin's keys in the config files."""
        return key_prefix(cls.kind, cls.name)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """{param: default} of every key in ``keys`` (key families ``<param>.*`` have none)."""
        return {param.lower(): key.default for param, key in cls.keys.items() if not param.endswith("*")}


# ---------------------------------------------------------------- scheduler


@dataclass
class SchedInfo:
    """What a scheduler plugin may read. ``None`` means unknown."""

    wms: WMSQueueInfo | None
    batch: BatchQueueInfo | None
    factory_pilots: int | None = None  # pending + running over every queue of this factory
    now: float = 0.0
    finished: list = field(default_factory=list)  # FinishedPilot of this queue, recent first
    alive_peers: int = 0  # other factories serving this WMS queue


class SchedulerPlugin(Plugin, ABC):
    """One step of the scheduler chain.

    ``calc`` receives the number handed on by the previous step (the chain
    starts at 0) and returns ``(n, message)``. A negative n asks for idle
    pilots to be removed.
    """

    kind = "sched"

    def __init__(self, queue: QueueConfig, factory: Section):
        self.queue = queue
        self.factory = factory
        self.options: dict[str, Any] = queue.plugin_options(type(self))

    @abstractmethod
    def calc(self, n: int, info: SchedInfo) -> tuple[int, str]: ...


# ---------------------------------------------------------------- status


class StatusPlugin(Plugin, ABC):
    """Shared status of one endpoint (one PanDA server, one schedd, one Slurm cluster).

    The factory makes one instance per endpoint and polls it from one thread
    every ``[Factory] <kind>.<name>.sleep`` seconds; one poll serves every
    queue on that endpoint. ``poll`` raises on any failure (it is then
    *unknown*, never zero) and must bound every external call with a timeout.
    """

    default_sleep: ClassVar[float] = 60.0
    default_maxage: ClassVar[float] = 600.0
    # option names (without prefix) that identify the endpoint; the rest is per queue
    endpoint_keys: ClassVar[tuple[str, ...]] = ()
    # the endpoint_keys that name it for people (URL, host, cluster), joined by ":"
    name_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: dict[str, Any], context: FactoryContext):
        self.options = options
        self.context = context

    @classmethod
    def endpoint(cls, options: dict[str, Any]) -> str:
        """A readable id of the endpoint; queues with the same id share one poller."""
        parts = [f"{k}={options.get(k)}" for k in cls.endpoint_keys if options.get(k)]
        return f"{cls.name}({', '.join(parts)})" if parts else cls.name

    @classmethod
    def queue_key(cls, queue: QueueConfig) -> str:
        """What ``poll`` is asked for and answers under, for this queue: its name."""
        return queue.name

    @classmethod
    def endpoint_name(cls, options: dict[str, Any]) -> str:
        """The endpoint as operators call it (page, API, metric label): ``local`` when nothing names it."""
        parts = [str(options[k]) for k in cls.name_keys if options.get(k)]
        return ":".join(parts) or "local"

    @abstractmethod
    def poll(self, queues: Collection[str]) -> dict[str, Any]: ...


class WMSStatusPlugin(StatusPlugin):
    """``poll(wmsqueues)`` -> {wmsqueue: WMSQueueInfo}; a queue left out is unknown."""

    kind = "wmsstatus"

    @classmethod
    def queue_key(cls, queue: QueueConfig) -> str:
        """Queues are asked for by their WMS queue (``wmsqueue``): queues sharing one share its status."""
        return queue.wmsqueue

    @abstractmethod
    def poll(self, queues: Collection[str]) -> dict[str, WMSQueueInfo]: ...

    @classmethod
    def pilot_environment(cls, options: dict[str, Any], config: FactoryConfig) -> dict[str, str]:
        """What a pilot needs in its environment to reach this WMS's work ({} for most WMSs).

        Asked by the submit plugins that start the pilots (Local, Slurm) for
        ``options`` of the queue's WMS status plugin; e.g. Local hands on its
        spool directory.
        """
        return {}


class BatchStatusPlugin(StatusPlugin):
    """``poll(queue names)`` -> {queue: BatchQueueInfo} for every queue asked for
    (zeros for a queue with no pilots); pilots are attributed by the tags the
    submit plugin put on them (factory id and queue name)."""

    kind = "batchstatus"

    @abstractmethod
    def poll(self, queues: Collection[str]) -> dict[str, BatchQueueInfo]: ...

    def list_pilots(self, queue: str) -> list[LivePilot]:
        """Every pilot of this factory's ``queue`` in the batch system now (pending, held, running), asked
        for when an operator lists them (a page or the API, cached there): one batch system query, with the
        plugin's timeout. A plugin that cannot list its pilots keeps this default."""
        raise NotImplementedError(f"the {self.name} batch status plugin cannot list its pilots")


# ---------------------------------------------------------------- submit


@dataclass
class SubmitResult:
    """Outcome of one submit or remove call. ``error`` set means it failed."""

    count: int = 0
    ids: list[str] = field(default_factory=list)
    message: str = ""
    error: str | None = None
    # when the batch system answered (time.time()); None: when ``submit`` returned. The queue's last
    # submission (invariant 2) and the cycle's ``submitted_at``: a status taken after it shows the pilots.
    accepted_at: float | None = None


class BatchSubmitPlugin(Plugin, ABC):
    """Submits pilots for one queue: ``submit(n)`` in one bulk call.

    ``remove(n)`` removes up to n pilots that have not started; a running
    pilot is never removed. Failures are returned in ``SubmitResult.error``.
    """

    kind = "batchsubmit"

    def __init__(self, queue: QueueConfig, context: FactoryContext):
        self.queue = queue
        self.context = context
        self.options: dict[str, Any] = queue.plugin_options(type(self))

    @property
    def credential_profile(self) -> str | None:
        """auth.conf profile this queue submits with (``batchsubmit.<name>.proxy``)."""
        return self.options.get("proxy") or None

    def credential(self) -> tuple[str, str] | None:
        """(credential type, file) of this queue's profile for its pilots; None without a profile.

        Raises ValueError when the profile has no usable file (the queue holds
        its submissions before that, so this is a race with a failing check).
        """
        profile = self.credential_profile
        if not profile:
            return None
        state = self.context.credential(profile)
        if state is None or not state.ok or not state.path:
            raise ValueError(f"credential profile {profile} has no usable file")
        return self.context.credentials.credential_type(profile), state.path

    def prepare(self, when: float) -> None:
        """Make ready what a submission at ``when`` needs (e.g. its log directory), so that
        the cycle does not pay for it. The queue calls it after each cycle that submitted, for its
        next one; a failure here is only logged: ``submit`` does the same work again and reports it."""

    @abstractmethod
    def submit(self, n: int) -> SubmitResult: ...

    def remove(self, n: int) -> SubmitResult:
        return SubmitResult(0, message=f"{self.name}: removing pilots is not supported")


# ---------------------------------------------------------------- monitor


class MonitorPlugin(Plugin, ABC):
    """Reports to an external monitor (a section of monitor.conf).

    Called from the cycle workers (autopyfactory/cycles.py) after each cycle:
    implementations must not block (hand the work to a background sender).
    """

    kind = "monitor"

    def __init__(self, section: Section, context: FactoryContext):
        self.section = section
        self.context = context

    def start(self) -> None:
        """Factory starting: register it."""

    def stop(self) -> None:
        """Factory stopping: flush what can be flushed quickly."""

    @abstractmethod
    def cycle_done(self, queue: QueueConfig, record: CycleRecord) -> None: ...

    def pilots_seen(self, queue: QueueConfig, batch: BatchQueueInfo) -> None:
        """After ``cycle_done``: the batch answer that cycle planned from, whose ``active`` and
        ``finished`` tell each pilot's state (the same answer may come again; it is never changed)."""


# ---------------------------------------------------------------- credentials


class AuthPlugin(Plugin, ABC):
    """One credential profile of auth.conf (keys ``<name>.<param>``, e.g. x509.proxyfile)."""

    kind = "auth"
    # what the credential is, hence how pilots receive it: "x509" (X509_USER_PROXY),
    # "token" (BEARER_TOKEN_FILE) or "ssh" (used by the factory only, never handed on)
    credential_type: ClassVar[str] = ""

    def __init__(self, section: Section, context: FactoryContext):
        self.section = section
        self.context = context
        self.options = section.options(self.key_prefix())

    @property
    def check_interval(self) -> float:
        """Seconds between checks: ``<name>.checktime``, else an hour."""
        return float(self.options.get("checktime") or 3600.0)

    @abstractmethod
    def check(self) -> CredentialStatus:
        """Check (and renew when due) the credential; never raise for a bad credential."""

    def renew(self) -> str:
        """Make a new credential; '' on success, else why not."""
        return f"{self.name} credentials cannot be renewed"

    def renew_when_due(self, time_left: Callable[[], tuple[float | None, str]],
                       enabled: bool) -> tuple[float | None, str, str]:
        """(seconds left or None, why unknown, message), renewed first when ``enabled`` and
        the time left is unknown or below ``<name>.minlife``."""
        left, why = time_left()
        if not enabled or (left is not None and left >= self.options["minlife"]):
            return left, why, ""
        failure = self.renew()
        if failure:
            return left, why, failure
        left, why = time_left()
        return left, why, "renewed"

    def unusable(self, left: float | None, why: str, message: str, path: str) -> CredentialStatus | None:
        """The status of a credential whose time left is unknown or over; None when some is left."""
        if left is None:
            return CredentialStatus(self.section.name, False, None, "; ".join(m for m in (why, message) if m), path)
        if left <= 0:
            return CredentialStatus(self.section.name, False, 0, "; ".join(m for m in ("expired", message) if m), path)
        return None


# ---------------------------------------------------------------- the kinds


@dataclass(frozen=True)
class PluginKind:
    """One kind of plugin: its base class and how operators name it and its keys."""

    base: type[Plugin]
    title: str  # in messages: "unknown WMS status plugin"
    selector: str  # the key naming the plugin: in a queue section, or in an auth/monitor profile
    prefix: str  # of the plugin's keys, with {kind} and {name} (lower-case) filled in
    in_queue: bool  # named in queues.conf (else in a profile of auth.conf or monitor.conf)

    @property
    def name(self) -> str:
        """``sched``, ``wmsstatus``, ...: also the sub-package of its built-in plugins."""
        return self.base.kind


KINDS: dict[str, PluginKind] = {
    kind.name: kind
    for kind in (
        PluginKind(SchedulerPlugin, "scheduler", "schedplugin", "{kind}.{name}.", True),
        PluginKind(WMSStatusPlugin, "WMS status", "wmsstatusplugin", "{kind}.{name}.", True),
        PluginKind(BatchStatusPlugin, "batch status", "batchstatusplugin", "{kind}.{name}.", True),
        PluginKind(BatchSubmitPlugin, "batch submit", "batchsubmitplugin", "{kind}.{name}.", True),
        PluginKind(MonitorPlugin, "monitor", "monitorplugin", "", False),
        PluginKind(AuthPlugin, "credentials", "plugin", "{name}.", False),
    )
}
QUEUE_KINDS: tuple[PluginKind, ...] = tuple(kind for kind in KINDS.values() if kind.in_queue)


def key_prefix(kind: str, name: str) -> str:
    """Prefix of the keys of plugin ``name`` of ``kind``: ``wmsstatus.panda.`` in queues.conf
    (and [Factory] for status timing), ``x509.`` in auth.conf, none in monitor.conf."""
    return KINDS[kind].prefix.format(kind=kind, name=name.lower())
