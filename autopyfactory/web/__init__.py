"""The factory's built-in web server: status page, pilot logs, metrics, JSON and admin API."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autopyfactory.factory import Factory
    from autopyfactory.web.server import WebServer


def web_service(factory: Factory) -> WebServer:
    """The web server for ``factory``, with the pilot history its plots read and the cycle durations its metrics show."""
    from autopyfactory.web.history import PilotHistory
    from autopyfactory.web.server import WebServer

    history = getattr(factory, "pilot_history", None)
    if history is None:
        history = PilotHistory()
        factory.pilot_history = history
        factory.listeners.append(history.cycle_done)
    server = WebServer(factory)
    factory.listeners.append(server.app.cycle_durations.cycle_done)
    return server
