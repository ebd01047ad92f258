"""The factory's web application (WSGI): status page, logs, metrics, JSON and admin API.

    GET  /                                  status page (HTML, no JavaScript)
    GET  /logs/...                          pilot logs under baseLogDir
    GET  /robots.txt
    GET  /metrics                           Prometheus exposition
    GET  /api/v1/factory | /api/v1/queues | /api/v1/queues/<name>
    POST /api/v1/admin/reload | stop | loglevel | queues/<name>/pause|resume
    GET  /api/v1/admin/config | log?lines=N | audit?limit=N

The admin API needs ``Authorization: Bearer <token>`` (see admin.py) and, unless
``[Factory] admin.allowremote`` is true, a client on the loopback interface:
the logs and the status page may be served wider than the admin API.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import jinja2

from autopyfactory.metrics import exposition, factory_registry
from autopyfactory.web import admin, logs
from autopyfactory.web.history import finished_last_hour, pilot_history
from autopyfactory.web.plot import pilots_svg

if TYPE_CHECKING:
    from autopyfactory.factory import Factory
    from autopyfactory.queue import APFQueue

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
DEFAULT_CYCLES = 20
ADMIN_ACTIONS_SHOWN = 10  # latest admin actions on the status page

STATUS_TEXT = {
    200: "200 OK", 202: "202 Accepted", 206: "206 Partial Content", 301: "301 Moved Permanently", 304: "304 Not Modified",
    400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found",
    405: "405 Method Not Allowed", 409: "409 Conflict", 413: "413 Payload Too Large",
    416: "416 Range Not Satisfiable", 500: "500 Internal Server Error", 503: "503 Service Unavailable",
}
SECURITY_HEADERS = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "same-origin")]


class Response:
    def __init__(self, status: int, body: bytes | Iterable[bytes] = b"",
                 content_type: str = "text/plain; charset=utf-8", headers: list | None = None):
        self.status = status
        self.body = body
        self.headers = [("Content-Type", content_type), *(headers or [])]
        if isinstance(body, bytes):
            self.headers.append(("Content-Length", str(len(body))))


def json_response(status: int, data: Any, headers: list | None = None) -> Response:
    body = (json.dumps(data, indent=1, default=str) + "\n").encode()
    return Response(status, body, "application/json", headers)


def text_response(status: int, text: str) -> Response:
    return Response(status, (text.rstrip("\n") + "\n").encode())


def iso(when: float | None) -> str | None:
    return None if when is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class WebApp:
    """WSGI callable over one factory."""

    def __init__(self, factory: Factory):
        self.factory = factory
        config = factory.config
        self.logs = logs.LogFiles(config.get("baseLogDir"))
        self.allow_robots = bool(config.get("logserver.allowrobots", False))
        self.admin_api = admin.AdminAPI(factory, self.queue_view)
        self.token = self.admin_api.token
        self.metrics = factory_registry(factory)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("autopyfactory.web", "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["ago"] = ago
        self.templates.filters["urlpath"] = lambda s: quote(str(s))
        self.hostname = socket.gethostname()

    # ------------------------------------------------------------ WSGI
    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self.route(environ)
        except Exception:
            log.exception("web: %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            response = text_response(500, "internal error (see the factory log)")
        headers = response.headers + SECURITY_HEADERS
        start_response(STATUS_TEXT.get(response.status, f"{response.status} Error"), headers)
        if environ.get("REQUEST_METHOD") == "HEAD":
            close = getattr(response.body, "close", None)
            if callable(close):
                close()
            return [b""]
        if isinstance(response.body, bytes):
            return [response.body]
        return response.body

    def route(self, environ: dict) -> Response:
        method = environ.get("REQUEST_METHOD", "GET")
        raw = environ.get("PATH_INFO", "") or "/"
        # PEP 3333: PATH_INFO is bytes decoded as latin-1; file and queue names are UTF-8
        path = raw.encode("latin-1", "replace").decode("utf-8", "replace")
        if path.startswith("/api/v1/admin/"):
            return self.admin(environ, path[len("/api/v1/admin/"):])
        if method not in ("GET", "HEAD"):
            response = text_response(405, f"{method} not allowed here")
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        if path == "/":
            return self.status_page()
        if path == "/robots.txt":
            return self.robots()
        if path == "/metrics":
            return Response(200, exposition(self.metrics), "text/plain; version=0.0.4; charset=utf-8")
        if path == "/logs" or path.startswith("/logs/"):
            return self.serve_logs(environ, path[len("/logs"):])
        if path.rstrip("/") == "/api/v1/factory":
            return json_response(200, self.factory_view())
        if path.rstrip("/") == "/api/v1/queues":
            return json_response(200, {"queues": [self.queue_view(q) for q in self.queue_list()]})
        if path.startswith("/api/v1/queues/"):
            name = path[len("/api/v1/queues/"):].rstrip("/")
            queue = self.factory.queues.get(name)
            if queue is None:
                return json_response(404, {"error": f"no queue {name!r}",
                                           "queues": sorted(self.factory.queues)})
            query = parse_qs(environ.get("QUERY_STRING", ""))
            try:
                count = max(0, int(query.get("cycles", [DEFAULT_CYCLES])[0]))
            except ValueError:
                return json_response(400, {"error": "cycles must be an integer"})
            return json_response(200, self.queue_view(queue, cycles=count))
        if path.startswith("/api/"):
            return json_response(404, {"error": f"no such endpoint {path}"})
        return text_response(404, "not found")

    # ------------------------------------------------------------ views
    def queue_list(self) -> list[APFQueue]:
        return sorted(list(self.factory.queues.values()), key=lambda q: q.name)

    def today_logs(self, queue: str) -> str | None:
        """URL path of today's log directory of ``queue``, if there is one."""
        day = time.strftime("%Y-%m-%d", time.gmtime())
        if os.path.isdir(os.path.join(self.factory.config.get("baseLogDir"), day, queue)):
            return f"/logs/{day}/{quote(queue)}/"
        return None

    def queue_view(self, queue: APFQueue, cycles: int | None = None) -> dict:
        records = queue.recent_records()  # one copy, so last_message and cycles agree
        view = queue.summary(records)
        # "cycles" of the API is the list of cycle records; the count keeps its own name
        view["cycle_count"] = view.pop("cycles", queue.cycles)
        view["done_1h"], view["fault_1h"] = finished_last_hour(self.factory, view)
        view["logs"] = self.today_logs(queue.name)
        if cycles is not None:
            view["cycles"] = [r.to_dict() for r in records[:cycles]]
        return view

    def factory_view(self) -> dict:
        factory = self.factory
        view = factory.summary()
        view["host"] = self.hostname
        view["admin_email"] = factory.config.get("factoryAdminEmail", "")
        now = time.time()
        view["credentials"] = [
            {"profile": name,
             "ok": bool(state and state.ok),
             "seconds_left": None if state is None else state.seconds_left,
             "message": "not checked yet" if state is None else state.message}
            for name, state in sorted(factory.credentials.all_status().items())
        ]
        endpoints = []
        for health in factory.status.health():
            health = dict(health)
            health["last_success"] = iso(health["last_success"])
            endpoints.append(health)
        view["endpoints"] = sorted(endpoints, key=lambda h: (h["kind"], h["endpoint"]))
        _, why = self.token.load()
        view["admin"] = {"enabled": not why, "why": why or None}
        view["now"] = iso(now)
        return view

    def status_page(self) -> Response:
        factory = self.factory_view()
        rows = []
        now = time.time()
        for queue in self.queue_list():
            view = self.queue_view(queue)
            record = queue.last_record
            view["age"] = None if record is None else now - record.started
            view["plot"] = pilots_svg(pilot_history(self.factory, queue.name), title=queue.name)
            rows.append(view)
        html = self.templates.get_template("status.html").render(
            factory=factory, queues=rows, started_ago=now - self.factory.started,
            admin_actions=self.admin_api.recent(ADMIN_ACTIONS_SHOWN),
            keepdays=self.factory.config.get("persistence.keepdays"),
        )
        return Response(200, html.encode(), "text/html; charset=utf-8",
                        [("Cache-Control", "no-store"), ("Refresh", "60")])

    def robots(self) -> Response:
        if self.allow_robots:
            return text_response(200, "User-agent: *\nDisallow: /api/\nDisallow: /metrics\n")
        return text_response(200, "User-agent: *\nDisallow: /\n")

    # ------------------------------------------------------------ logs
    def serve_logs(self, environ: dict, relative: str) -> Response:
        try:
            real = self.logs.resolve(relative)
            if os.path.isdir(real):
                if not relative.endswith("/"):
                    target = quote("/logs" + relative) + "/"
                    return Response(301, b"", headers=[("Location", target)])
                return self.directory_index(relative, real)
            handle, info = self.logs.open(real)
        except logs.NotFound:
            return text_response(404, "not found")
        size = info.st_size
        headers = [("Accept-Ranges", "bytes"), ("Last-Modified", logs.http_date(info.st_mtime)),
                   ("Content-Security-Policy", "sandbox"), ("Cache-Control", "no-cache")]
        wanted = logs.parse_range(environ.get("HTTP_RANGE"), size)
        if wanted == "unsatisfiable":
            handle.close()
            return Response(416, b"", headers=[("Content-Range", f"bytes */{size}")])
        status, start, length = 200, 0, size
        if isinstance(wanted, tuple):
            start, end = wanted
            status, length = 206, end - start + 1
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        headers.append(("Content-Length", str(length)))
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None:
            # waitress sends Content-Length bytes from the current position, from its
            # own I/O loop: a big log does not hold a worker thread
            handle.seek(start)
            body: Iterable[bytes] = wrapper(handle, logs.CHUNK)
        else:
            body = logs.file_chunks(handle, start, length)
        return Response(status, body, logs.content_type(real), headers)

    def directory_index(self, relative: str, real: str) -> Response:
        shown = "/" + "/".join(p for p in relative.split("/") if p)
        entries = self.logs.listing(real)
        html = self.templates.get_template("index.html").render(
            path=shown.rstrip("/") + "/", parent=shown != "/", entries=entries,
            when=lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)),
        )
        return Response(200, html.encode(), "text/html; charset=utf-8", [("Cache-Control", "no-cache")])

    # ------------------------------------------------------------ admin
    def admin(self, environ: dict, action: str) -> Response:
        answer = self.admin_api.handle(environ, action, is_loopback(environ.get("REMOTE_ADDR")))
        return json_response(answer.status, answer.body, answer.headers)
