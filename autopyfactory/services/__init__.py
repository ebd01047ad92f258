"""Services that run beside the queues in the factory process.

``build`` decides from the config which ones this factory runs (web server,
log cleaner, alarms, persistence) and says what each needs to hear; the factory
wires them in itself (see ``Factory.__init__``). Each service has
``start()`` and ``stop()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# imported with the factory, not when build() runs: a daemon started with --runas has
# dropped privileges by then and may no longer read the Python installation
from autopyfactory.alarms import Alarms
from autopyfactory.persistence import PersistenceService, Store
from autopyfactory.services.cleaner import LogCleaner
from autopyfactory.web.history import PilotHistory
from autopyfactory.web.server import WebServer

if TYPE_CHECKING:
    from autopyfactory.config import FactoryConfig
    from autopyfactory.view import FactoryView

log = logging.getLogger(__name__)


@dataclass
class Services:
    running: list = field(default_factory=list)  # started in this order, stopped in reverse
    store: Store | None = None  # persistence store, when it could be opened
    cycle_listeners: list[Callable[..., Any]] = field(default_factory=list)  # (queue, record) after every cycle
    credential_listeners: list[Callable[..., Any]] = field(default_factory=list)  # (state) after every check
    config_listeners: list[Callable[[], Any]] = field(default_factory=list)  # () after start and each reload


def build(factory: FactoryView) -> Services:
    services = Services()
    if factory.config.get("logserver.enabled"):
        history = PilotHistory()
        server = WebServer(factory, history)
        services.running.append(server)
        services.cycle_listeners.append(history.cycle_done)
        services.cycle_listeners.append(server.app.cycle_durations.cycle_done)  # the cycle-duration histogram
    services.running.append(LogCleaner(factory))
    alarms = Alarms(factory)  # always: a reload may set factorySMTPServer; it mails only while it is set
    services.running.append(alarms)
    services.cycle_listeners.append(alarms.cycle_done)
    services.config_listeners.append(alarms.config_checked)
    # opened here, before any queue starts, so the queues restore from it
    services.store = open_store(factory.config)
    if services.store is not None:
        persistence = PersistenceService(services.store)
        services.running.append(persistence)
        services.cycle_listeners.append(persistence.cycle_done)
        services.credential_listeners.append(persistence.credential_checked)
    return services


def open_store(config: FactoryConfig) -> Store | None:
    """The persistence store, or None (logged) when it cannot be opened: the factory runs without history."""
    path = config.persistence_path
    try:
        return Store(path, keepdays=config.get("persistence.keepdays"),
                     flush_interval=config.get("persistence.flushinterval"))
    except Exception as exc:  # e.g. a directory we may not write
        log.error("persistence: cannot open %s (%s: %s): running without history", path, type(exc).__name__, exc)
        return None
