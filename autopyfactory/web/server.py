"""The web server service: waitress serving WebApp from its own thread."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from waitress import create_server, wasyncore

from autopyfactory.web.app import WebApp

if TYPE_CHECKING:
    from autopyfactory.view import FactoryView
    from autopyfactory.web.history import PilotHistory

log = logging.getLogger(__name__)

WORKER_THREADS = 8


class WebServer:
    """``logserver.bind``:``logserver.port`` (port 0 picks a free port; see ``port``)."""

    def __init__(self, factory: FactoryView, history: PilotHistory):
        self.factory = factory
        self.app = WebApp(factory, history)
        self.bind = factory.config.get("logserver.bind") or "127.0.0.1"
        self.requested_port = int(factory.config.get("logserver.port"))
        self.port: int | None = None
        self.error: str | None = None  # why it is not serving
        self._server = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"WebServer({self.url or self.bind})"

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "", "*") else self.bind
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        try:
            self._server = create_server(
                self.app, host=self.bind, port=self.requested_port, threads=WORKER_THREADS,
                ident="autopyfactory", clear_untrusted_proxy_headers=True,
                channel_timeout=60, connection_limit=200,
            )
        except (OSError, ValueError) as exc:
            # the queues matter more than their web page: keep the factory running, say it loudly
            self.error = f"cannot listen on {self.bind}:{self.requested_port}: {exc}"
            log.error("web: %s; the factory runs without its web server", self.error)
            return
        self.port = self._server.effective_port
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)
        self._thread.start()
        _, why = self.app.token.load()
        if why:
            log.warning("web: admin API disabled: %s", why)
        log.info("web: serving status, logs, metrics and API on %s", self.url)

    def _run(self) -> None:
        try:
            self._server.run()
        except Exception:  # the loop ends when stop() closes its sockets
            if self._server is not None:
                log.exception("web server loop failed")

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(server._map)
        if self._thread is not None:
            self._thread.join(10)
        log.info("web: stopped")
