"""The web server service: waitress serving WebApp from its own thread.

Waitress reads requests in its I/O loop, not in worker threads, so slow
clients never hold a worker; guards are added for slow clients, many clients and big bodies
(docs/web.md, "Slow clients and floods"):

- a request must arrive whole within ``REQUEST_TIMEOUT`` seconds of its
  first byte, or its connection is closed (slowloris);
- a request body larger than the admin API's ``MAX_BODY`` is refused with 413
  by waitress itself, from its ``Content-Length`` or, for a chunked body, as
  the bytes arrive: it is never buffered whole, in memory or on disk;
- past ``MAX_CONNECTIONS`` open connections, each new one closes the least
  recently active connection that is neither being served nor sent to
  (connection floods), instead of refusing every newcomer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from autopyfactory.logthrottle import throttle_logger
from autopyfactory.web.admin import MAX_BODY
from autopyfactory.web.app import WebApp

if TYPE_CHECKING:
    from autopyfactory.view import FactoryView
    from autopyfactory.web.history import PilotHistory

log = logging.getLogger(__name__)

WORKER_THREADS = 8
REQUEST_TIMEOUT = 10  # seconds from the first byte of a request to its last
MAX_CONNECTIONS = 250  # open connections kept; more evict the least recently active idle one
IDLE_TIMEOUT = 30  # seconds a connection may stay silent between requests


class RefusalTask(ErrorTask):
    """Waitress's own refusals (a body too large, a malformed request) as the factory's errors are:
    ``{"error": "…"}`` under /api/, text elsewhere."""

    def execute(self) -> None:
        error = self.request.error
        path = getattr(self.request, "path", None) or ""
        if not path.startswith("/api/"):
            super().execute()
            return
        why = (f"request body larger than {MAX_BODY} bytes" if isinstance(error, RequestEntityTooLarge)
               else f"{error.reason}: {error.body}")
        body = (json.dumps({"error": why}) + "\n").encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class GuardedChannel(HTTPChannel):
    """A waitress connection with a deadline for each request and eviction under a flood."""

    error_task_class = RefusalTask
    request_deadline = 0.0  # monotonic time the request being read must be complete by

    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map)
        if len(server.active_channels) > MAX_CONNECTIONS:
            idle = [c for c in server.active_channels.values()
                    if c is not self and not c.requests and not c.total_outbufs_len and not c.will_close]
            if idle:
                min(idle, key=lambda c: c.last_activity).will_close = True

    def received(self, data: bytes) -> bool:
        if self.request is None:  # the first bytes of a new request
            self.request_deadline = time.monotonic() + REQUEST_TIMEOUT
        return super().received(data)

    def readable(self) -> bool:
        # checked by the I/O loop at least once a second (asyncore_loop_timeout)
        if self.request is not None and not self.requests and time.monotonic() > self.request_deadline:
            self.will_close = True
        return super().readable()


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
            proxy = self.factory.config.get("logserver.trustedproxy")
            # behind a reverse proxy that terminates TLS: believe its X-Forwarded-For/-Proto (and no one else's)
            trusting = {"trusted_proxy": proxy, "trusted_proxy_count": 1,
                        "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto"}} if proxy else {}
            self._server = create_server(
                self.app, host=self.bind, port=self.requested_port, threads=WORKER_THREADS,
                ident="autopyfactory", clear_untrusted_proxy_headers=True, **trusting,
                channel_timeout=IDLE_TIMEOUT, cleanup_interval=5, asyncore_use_poll=True,
                connection_limit=MAX_CONNECTIONS + 50,  # reached only when every connection is busy
                # a bigger body is refused (413) as its Content-Length arrives, or as a chunked body
                # passes the size, before it is buffered (in memory: below inbuf_overflow, never on disk)
                max_request_body_size=MAX_BODY + 1,
            )
        except (OSError, ValueError) as exc:
            # the queues matter more than their web page: keep the factory running, say it loudly
            self.error = f"cannot listen on {self.bind}:{self.requested_port}: {exc}"
            log.error("web: %s; the factory runs without its web server", self.error)
            return
        self._server.channel_class = GuardedChannel
        throttle_logger("waitress.queue")  # "Task queue depth is N" for every request of a flood: once a minute
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
