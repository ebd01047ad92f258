"""Services that run beside the queues in the factory process.

Each service has ``start()`` and ``stop()``; ``build`` decides from the
config which ones this factory runs (web server, log cleaner, persistence...).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

# imported with the factory, not when build() runs: a daemon started with --runas has
# dropped privileges by then and may no longer read the Python installation
from autopyfactory.persistence import PersistenceService, Store

if TYPE_CHECKING:
    from autopyfactory.factory import Factory

log = logging.getLogger(__name__)


def build(factory: Factory) -> list:
    from autopyfactory.services.cleaner import LogCleaner

    services: list = []
    if factory.config.get("logserver.enabled"):
        from autopyfactory.web import web_service

        services.append(web_service(factory))
    services.append(LogCleaner(factory))
    # opened here, before any queue starts, so the queues restore from it
    persistence = build_persistence(factory)
    if persistence is not None:
        services.append(persistence)
    return services


def build_persistence(factory: Factory):
    """Open the store (before any queue starts, so queues restore from it) and hook it in."""
    config = factory.config
    path = config.persistence_path
    try:
        store = Store(path, keepdays=config.get("persistence.keepdays"))
    except Exception as exc:  # e.g. a directory we may not write: the factory runs, without history
        log.error("persistence: cannot open %s (%s: %s): running without history", path, type(exc).__name__, exc)
        return None
    service = PersistenceService(store)
    factory.context.store = store
    factory.listeners.append(service.cycle_done)
    listeners = getattr(factory.credentials, "listeners", None)
    if listeners is not None:
        listeners.append(service.credential_checked)
    return service
