"""Services that run beside the queues in the factory process.

Each service has ``start()`` and ``stop()``; ``build`` decides from the
config which ones this factory runs (web server, log cleaner, persistence...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autopyfactory.factory import Factory


def build(factory: Factory) -> list:
    from autopyfactory.services.cleaner import LogCleaner

    services: list = []
    if factory.config.get("logserver.enabled"):
        from autopyfactory.web import web_service

        services.append(web_service(factory))
    services.append(LogCleaner(factory))
    return services
