"""The factory's web application (WSGI): status page, logs, metrics, JSON and admin API.

    GET  /                                  status page (HTML, no JavaScript)
    GET  /queues/<name>[?span=6h|24h|7d|14d] one queue: history, plot, cycles, chain steps, faulted pilots, config
    GET  /queues/<name>/pilots?state=S      one queue's pilots in a state (pending|held|running|done|fault), paged
    GET  /history[?span=…]                  the whole factory's history
    GET  /logs/...                          pilot logs under baseLogDir
    GET  /<YYYY-MM-DD>/...                  APF 2.4 log links: redirected to /logs/<YYYY-MM-DD>/...
    GET  /robots.txt
    GET  /metrics                           Prometheus exposition
    GET  /api/v1/factory | /api/v1/queues | /api/v1/queues/<name>
    GET  /api/v1/queues/<name>/history?since=…&step=… | /api/v1/history?since=…&step=…
    GET  /api/v1/queues/<name>/pilots?state=…&offset=N&limit=N
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
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import jinja2
from markupsafe import Markup

from autopyfactory.health import LEVELS, idle_health, one_line
from autopyfactory.metrics import CycleDurations, exposition, factory_registry
from autopyfactory.paths import PathEscape, confined
from autopyfactory.redact import redact, redact_data, redact_setting
from autopyfactory.timefmt import duration, iso, utc
from autopyfactory.web import admin, api, logs
from autopyfactory.web.history import (
    DEFAULT_SPAN,
    SPANS,
    PilotHistory,
    history_charts,
    history_json,
    window,
)
from autopyfactory.web.pilots import DEFAULT_LIMIT, MAX_LIMIT, STATES, PilotLister
from autopyfactory.web.plot import pilots_chart, pilots_svg
from autopyfactory.web.session import Sessions, cross_origin

if TYPE_CHECKING:
    from autopyfactory.queue import APFQueue
    from autopyfactory.view import FactoryView

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
DEFAULT_CYCLES = 20
PAGE_CYCLES = 30  # recent cycles in the queue page's table
CHAIN_CYCLES = 3  # latest cycles whose scheduler chain the queue page spells out
FAULTED_PILOTS = 10  # latest faulted pilots the queue page links logs for
REASON_CHARS = 70  # health reason and last message on the status page: a few short lines at most
MESSAGE_CHARS = 80
ADMIN_ACTIONS_SHOWN = 10  # latest admin actions on the status page

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
    """Every JSON answer, its strings redacted (autopyfactory/redact.py)."""
    body = (json.dumps(redact_data(data), indent=1, default=lambda v: redact(str(v))) + "\n").encode()
    return Response(status, body, "application/json", headers)


def text_response(status: int, text: str) -> Response:
    return Response(status, (redact(text).rstrip("\n") + "\n").encode())


def error_response(environ: dict, status: int, message: str) -> Response:
    """An error: a JSON body under /api/ (every error of the API is one), text elsewhere."""
    if (environ.get("PATH_INFO") or "").startswith("/api/"):
        return json_response(status, {"error": message})
    return text_response(status, message)


def body_length(environ: dict) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def history_of(records: list) -> list[tuple[float, int | None, int | None]]:
    """(time, pending, running) of cycle records given newest first, oldest first."""
    return [(r.started, None if r.batch is None else r.batch.get("pending"),
             None if r.batch is None else r.batch.get("running")) for r in reversed(records)]


def shown_config(values: dict) -> list[tuple[str, str]]:
    """A queue's effective keys for the queue page, sorted; secrets redacted as by the admin API."""
    shown = []
    for key, value in sorted(values.items()):
        value = redact_setting(key, value)
        shown.append((key, ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)))
    return shown


def shown(value: Any) -> Any:
    """What a page shows of a ``{{ value }}``: text redacted; Markup (the plots: numbers, queue names) as it is."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return redact(value)
    return value


def from_a_page(environ: dict) -> bool:
    """A form of the pages (signed in with a cookie, a CSRF field), not an API client with its bearer token."""
    if environ.get("HTTP_AUTHORIZATION") or environ.get("REQUEST_METHOD") != "POST":
        return False
    try:
        return "csrf" in admin.read_body(environ)
    except ValueError:  # a body that is not JSON nor a form: an API client's mistake
        return False


def back_to(target: str | None) -> str:
    """Where a form sends the browser back: a path of this server, never another site."""
    target = target or "/"
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class WebApp:
    """WSGI callable over one factory; its plots come from ``history``."""

    def __init__(self, factory: FactoryView, history: PilotHistory):
        self.factory = factory
        self.history = history
        config = factory.config
        self.logs = logs.LogFiles(config.get("baseLogDir"))
        self.pilots = PilotLister(self.logs)
        self.allow_robots = bool(config.get("logserver.allowrobots", False))
        self.admin_api = admin.AdminAPI(factory, self.queue_view)
        self.token = self.admin_api.token
        self.cycle_durations = CycleDurations()  # fed by a cycle listener (web_service)
        self.metrics = factory_registry(factory, self.cycle_durations)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("autopyfactory.web", "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=shown,
        )
        self.templates.filters["ago"] = duration
        self.templates.filters["iso"] = iso
        self.templates.filters["one_line"] = one_line
        self.templates.globals.update(REASON_CHARS=REASON_CHARS, MESSAGE_CHARS=MESSAGE_CHARS)
        self.templates.filters["urlpath"] = lambda s: quote(str(s))
        self.hostname = socket.gethostname()

    # ------------------------------------------------------------ WSGI
    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self.route(environ)
        except Exception:
            log.exception("web: %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            response = error_response(environ, 500, "internal error (see the factory log)")
        headers = response.headers + SECURITY_HEADERS
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
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
        if body_length(environ) > admin.MAX_BODY:
            return error_response(environ, 413, f"request body larger than {admin.MAX_BODY} bytes")
        if path.startswith("/api/v1/admin/"):
            return self.admin(environ, path[len("/api/v1/admin/"):])
        if path in ("/signin", "/signout"):
            return self.sign_in(environ) if path == "/signin" else self.sign_out(environ)
        if method not in ("GET", "HEAD"):
            response = error_response(environ, 405, f"{method} not allowed here (GET or HEAD)")
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        if path == "/":
            return self.status_page(environ)
        if path.rstrip("/") == "/history":
            return self.history_page(environ)
        if path.startswith("/queues/"):
            name, _, part = path[len("/queues/"):].rstrip("/").partition("/")
            if part == "pilots":
                return self.pilots_page(environ, name)
            return self.queue_page(environ, path[len("/queues/"):].rstrip("/"))
        if path == "/robots.txt":
            return self.robots()
        if path == "/metrics":
            return Response(200, exposition(self.metrics), "text/plain; version=0.0.4; charset=utf-8")
        if path == "/logs" or path.startswith("/logs/"):
            return self.serve_logs(environ, path[len("/logs"):])
        if logs.APF24_LINK.match(path):
            return self.apf24_link(path)
        if path.startswith("/api/"):
            return self.api(environ, path)
        return text_response(404, "not found")

    def api(self, environ: dict, path: str) -> Response:
        """GET /api/v1/factory | /api/v1/queues | /api/v1/queues/<name>[?cycles=N] | …/history | …/pilots."""
        if path.rstrip("/") == "/api/v1/factory":
            return json_response(200, self.factory_view())
        if path.rstrip("/") == "/api/v1/queues":
            return json_response(200, {"queues": self.queue_views()})
        if path.rstrip("/") == "/api/v1/history":
            return self.history_api(environ, None)
        if not path.startswith("/api/v1/queues/"):
            return json_response(404, {"error": f"no such endpoint {path}"})
        name = path[len("/api/v1/queues/"):].rstrip("/")
        queue_name, _, part = name.partition("/")
        if part == "history":
            return self.history_api(environ, queue_name)
        if part == "pilots":
            return self.pilots_api(environ, queue_name)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            count = max(0, int(query.get("cycles", [DEFAULT_CYCLES])[0]))
        except ValueError:
            return json_response(400, {"error": "cycles must be an integer"})
        queue = self.factory.queues.get(name)
        if queue is not None:
            return json_response(200, self.queue_view(queue, cycles=count))
        qconfig = self.factory.config.queues.get(name)
        if qconfig is not None:
            return json_response(200, self.disabled_view(qconfig, cycles=count))
        return json_response(404, {"error": f"no queue {name!r}", "queues": sorted(self.factory.config.queues)})

    # ------------------------------------------------------------ views
    def queue_list(self) -> list[APFQueue]:
        return sorted(list(self.factory.queues.values()), key=lambda q: q.name)

    def today_logs(self, queue: str) -> str | None:
        """URL path of today's log directory of ``queue``, if there is one."""
        day = time.strftime("%Y-%m-%d", time.gmtime())
        try:
            path = confined(self.factory.config.get("baseLogDir"), day, queue)
        except PathEscape:
            return None
        if os.path.isdir(path):
            return f"/logs/{day}/{quote(queue)}/"
        return None

    def queue_view(self, queue: APFQueue, cycles: int | None = None) -> dict:
        view = api.queue_view(queue, cycles=cycles)
        view["logs"] = self.today_logs(queue.name)
        return view

    def disabled_view(self, qconfig, cycles: int | None = None) -> dict:
        return api.disabled_view(qconfig, self.factory.config, cycles) | {"logs": None}

    def queue_views(self) -> list[dict]:
        """Every queue of queues.conf by name: the running ones, and the disabled ones."""
        views = [self.queue_view(q) for q in self.factory.queues.values()]
        views += [self.disabled_view(q) for name, q in self.factory.config.queues.items() if name not in self.factory.queues]
        return sorted(views, key=lambda v: v["name"])

    def factory_view(self) -> dict:
        factory = self.factory
        view = factory.summary()
        view["host"] = self.hostname
        view["admin_email"] = factory.config.get("factoryAdminEmail", "")
        view["health"] = self.health_counts()
        view["problems"] = api.factory_problems(factory)
        view["credentials"] = [api.credential_view(name, state)
                               for name, state in sorted(factory.credentials.all_status().items())]
        view["endpoints"] = sorted((api.endpoint_view(h) for h in factory.status.health()),
                                   key=lambda e: (e["kind"], e["endpoint"]))
        _, why = self.token.load()
        view["admin"] = {"enabled": not why, "why": why or None}
        view["last_reload"] = api.reload_view(getattr(factory, "last_reload", None))
        view["now"] = iso(time.time())
        return view

    def health_counts(self) -> dict[str, int]:
        """Queues of queues.conf at each health level (disabled ones included)."""
        counts = dict.fromkeys(LEVELS, 0)
        for queue in self.factory.queues.values():
            counts[queue.health().level] += 1
        config = self.factory.config
        for name, qconfig in config.queues.items():
            if name not in self.factory.queues:
                counts[idle_health(config, qconfig).level] += 1
        return counts

    def status_page(self, environ: dict) -> Response:
        """Every queue, problems first: critical, warning, then the rest (``Health.rank``), by name."""
        factory = self.factory_view()
        now = time.time()
        rows = [self.page_row(queue, now) for queue in self.factory.queues.values()]
        rows += [self.invalid_row(qconfig) for name, qconfig in self.factory.config.queues.items()
                 if name in self.factory.config.invalid and name not in self.factory.queues]
        rows.sort(key=lambda row: (row["rank"], row["name"]))
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["health"]] = counts.get(row["health"], 0) + 1
        levels = [(level, counts[level]) for level in LEVELS if level in counts]
        html = self.templates.get_template("status.html").render(
            factory=factory, queues=rows, levels=levels, started_ago=now - self.factory.started,
            admin_actions=self.admin_api.recent(ADMIN_ACTIONS_SHOWN), **self.signed_in(environ),
            keepdays=self.factory.config.get("persistence.keepdays"),
        )
        return Response(200, html.encode(), "text/html; charset=utf-8",
                        [("Cache-Control", "no-store"), ("Refresh", "60")])

    def page_row(self, queue: APFQueue, now: float) -> dict:
        """One queue as a row of the status page: the API's view, the WMS's own counts, a small plot.

        The plot is drawn from the cycle records the queue keeps in memory (restored
        from the store at start): no store query per queue, so 2,000 queues stay fast.
        """
        records = queue.recent_records()
        view = queue.summary(records[:1])
        view["rank"] = LEVELS.index(view["health"])
        view["logs"] = self.today_logs(queue.name)
        last = records[0] if records else None
        wms = last.wms if last is not None else None
        view["wms_ready"] = None if wms is None else wms.get("ready")
        view["wms_running"] = None if wms is None else wms.get("running")
        view["age"] = None if last is None else now - last.started
        view["plot"] = pilots_svg(history_of(records), title=queue.name)
        return view

    def invalid_row(self, qconfig) -> dict:
        """A queue not started for errors in its section, as a row of the status page (no numbers)."""
        view = self.disabled_view(qconfig)
        view.update(rank=LEVELS.index(view["health"]), wms_ready=None, wms_running=None, age=None,
                    plot=pilots_svg(history_of([]), title=qconfig.name))
        return view

    # ------------------------------------------------------------ history and pilots by state
    def history_of(self, environ: dict, name: str | None, now: float) -> tuple[list[dict] | None, float, float, str]:
        """(buckets, since, step, "") of a queue's (None: the factory's) history for the query's since (or
        span) and step, or (None, …, why not). ValueError for a bad query."""
        query = parse_qs(environ.get("QUERY_STRING", ""))
        since, step = window(query.get("since", query.get("span", [None]))[0], query.get("step", [None])[0], now)
        store = self.factory.store
        if store is None or not store.usable:
            return None, since, step, "no usable persistence store: the history is kept there (persistence.dbpath)"
        return store.history(name, since, now, step), since, step, ""

    def history_api(self, environ: dict, name: str | None) -> Response:
        if name is not None and name not in self.factory.config.queues:
            return json_response(404, {"error": f"no queue {name!r}", "queues": sorted(self.factory.config.queues)})
        now = time.time()
        try:
            buckets, since, step, why = self.history_of(environ, name, now)
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        if buckets is None:
            return json_response(503, {"error": why})
        return json_response(200, history_json(name, buckets, since, step, now))

    def history_section(self, environ: dict, name: str | None, title: str) -> dict:
        """What the pages show of a history: the span chosen, its two charts, or why there are none."""
        span = parse_qs(environ.get("QUERY_STRING", "")).get("span", [None])[0]
        span = span if span in SPANS else DEFAULT_SPAN
        now = time.time()
        buckets, _, step, why = self.history_of({"QUERY_STRING": f"since={span}"}, name, now)
        if buckets is None:
            return {"span": span, "spans": SPANS, "why": why}
        pilots, flow = history_charts(buckets, title, now)
        return {"span": span, "spans": SPANS, "why": "", "pilots": pilots, "flow": flow, "step": step}

    def history_page(self, environ: dict) -> Response:
        html = self.templates.get_template("history.html").render(
            factory=self.factory_view(), history=self.history_section(environ, None, self.factory.config.factory_id))
        return Response(200, html.encode(), "text/html; charset=utf-8", [("Cache-Control", "no-store")])

    def pilots_query(self, environ: dict, name: str) -> tuple[APFQueue | None, dict | None, str]:
        """(queue, one page of its pilots, "") for the query, or a reason with None."""
        queue = self.factory.queues.get(name)
        if queue is None:
            return None, None, f"no running queue {name!r}"
        query = parse_qs(environ.get("QUERY_STRING", ""))
        state = query.get("state", ["pending"])[0]
        try:
            offset = int(query.get("offset", ["0"])[0])
            limit = int(query.get("limit", [str(DEFAULT_LIMIT)])[0])
        except ValueError:
            raise ValueError("offset and limit must be integers") from None
        if offset < 0 or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"offset must be 0 or more and limit from 1 to {MAX_LIMIT}")
        return queue, self.pilots.page(queue, state, offset, limit, time.time()), ""

    def pilots_api(self, environ: dict, name: str) -> Response:
        try:
            _, page, why = self.pilots_query(environ, name)
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        if page is None:
            return json_response(404, {"error": why})
        return json_response(200 if not page["error"] else 503, page)

    def pilots_page(self, environ: dict, name: str) -> Response:
        try:
            queue, page, why = self.pilots_query(environ, name)
        except ValueError as exc:
            return text_response(400, str(exc))
        if page is None:
            return text_response(404, why)
        html = self.templates.get_template("pilots.html").render(
            factory=self.factory_view(), q=self.queue_view(queue), page=page, states=STATES)
        return Response(200, html.encode(), "text/html; charset=utf-8", [("Cache-Control", "no-store")])

    def queue_page(self, environ: dict, name: str) -> Response:
        queue = self.factory.queues.get(name)
        if queue is None:
            return text_response(404, f"no queue {name!r}")
        now = time.time()
        records = queue.recent_records()
        view = self.queue_view(queue)
        last = records[0] if records else None
        html = self.templates.get_template("queue.html").render(
            factory=self.factory_view(), q=view, now=now,
            wms=last.wms if last is not None else None,
            history=self.history_section(environ, name, name),
            reasons=sorted((last.batch or {}).get("reasons", {}).items(), key=lambda kv: -kv[1])
            if last is not None else [],
            chart=pilots_chart(self.history.series(queue), title=name), **self.signed_in(environ),
            cycles=records[:PAGE_CYCLES], chain=records[:CHAIN_CYCLES],
            faulted=self.faulted_pilots(queue, now),
            config=shown_config(queue.config.values),
        )
        return Response(200, html.encode(), "text/html; charset=utf-8",
                        [("Cache-Control", "no-store"), ("Refresh", "60")])

    def faulted_pilots(self, queue: APFQueue, now: float) -> list[dict]:
        """The latest faulted pilots of ``queue`` with the URLs of the log files they left."""
        pilots = [p for p in queue.finished_pilots(now) if p.state == "fault"][:FAULTED_PILOTS]
        return [{"pilot": p, "files": self.logs.pilot_files(queue.name, p.jobid, p.end)} for p in pilots]

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
        headers = [("Accept-Ranges", "bytes"), ("Last-Modified", formatdate(info.st_mtime, usegmt=True)),
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

    def apf24_link(self, path: str) -> Response:
        """An APF 2.4 link (its log server served baseLogDir at ``/``: ``/<YYYY-MM-DD>/<queue>/<file>``)
        redirected to the same file under ``/logs/``, where every check of serve_logs applies."""
        if any(part in (".", "..") for part in path.split("/")) or "\\" in path or "\x00" in path:
            return text_response(404, "not found")
        return Response(301, b"", headers=[("Location", quote("/logs" + path)), ("Cache-Control", "no-cache")])

    def directory_index(self, relative: str, real: str) -> Response:
        shown = "/" + "/".join(p for p in relative.split("/") if p)
        entries = self.logs.listing(real)
        html = self.templates.get_template("index.html").render(
            path=shown.rstrip("/") + "/", parent=shown != "/", entries=entries,
            when=lambda t: utc(t, "%Y-%m-%d %H:%M:%S") or "?",
        )
        return Response(200, html.encode(), "text/html; charset=utf-8", [("Cache-Control", "no-cache")])

    # ------------------------------------------------------------ admin
    def admin(self, environ: dict, action: str) -> Response:
        answer = self.admin_api.handle(environ, action, is_loopback(environ.get("REMOTE_ADDR")))
        if from_a_page(environ):  # a form of the pages: back to the page, or the error in words
            if answer.status < 400:
                return Response(303, b"", headers=[("Location", back_to(admin.read_body(environ).get("next")))])
            why = answer.body.get("error") or "; ".join(answer.body.get("problems", [])) or "refused"
            return text_response(answer.status, f"{action}: {why}")
        return json_response(answer.status, answer.body, answer.headers)

    # ------------------------------------------------------------ signing in on the pages (session.py)
    def signed_in(self, environ: dict) -> dict:
        """What a page's template needs to show its forms: the session's CSRF token (None: read-only)."""
        session = self.admin_api.page_session(environ)
        return {"csrf": session.csrf if session is not None else None, "page_path": environ.get("PATH_INFO", "/")}

    def sign_in(self, environ: dict) -> Response:
        method = environ.get("REQUEST_METHOD", "GET")
        _, disabled = self.token.load()
        local = is_loopback(environ.get("REMOTE_ADDR"))
        why = disabled and f"admin API disabled: {disabled}"
        if not why and not local and not self.admin_api.allow_remote:
            why = "signing in works on the loopback interface only (admin.allowremote = false)"
        if method == "POST" and not why:
            params = admin.read_body(environ)
            allowed, refused = self.token.check(f"Bearer {params.get('token', '')}")
            answer = admin.Answer(303 if allowed else 401, {}, "" if allowed else refused)
            self.admin_api.audit(environ.get("REMOTE_ADDR") or "?", "signin", answer, "ok" if allowed else "refused")
            if allowed:
                session = self.admin_api.sessions.start(self.token.load()[0])
                return Response(303, b"", headers=[("Location", back_to(params.get("next"))),
                                                   self.admin_api.sessions.cookie(session, environ)])
            why = "wrong token"
        elif method not in ("GET", "HEAD", "POST"):
            return text_response(405, f"{method} not allowed here (GET or POST)")
        next_page = admin.read_body(environ).get("next", "/")  # the form's, or ?next= of the sign-in link
        html = self.templates.get_template("signin.html").render(
            factory=self.factory_view(), why=why, can_sign_in=not why or why == "wrong token",
            next=back_to(next_page), csrf=None, page_path="/signin")
        return Response(401 if why == "wrong token" else 403 if why else 200, html.encode(),
                        "text/html; charset=utf-8", [("Cache-Control", "no-store")])

    def sign_out(self, environ: dict) -> Response:
        if environ.get("REQUEST_METHOD") != "POST":
            return text_response(405, "sign out with the page's form (POST)")
        session = self.admin_api.page_session(environ)
        if session is None or cross_origin(environ) or \
                not Sessions.csrf_ok(session, admin.read_body(environ).get("csrf")):
            return text_response(403, "signout: not signed in, or missing or wrong CSRF token")
        self.admin_api.sessions.end(session)
        self.admin_api.audit(environ.get("REMOTE_ADDR") or "?", "signout", admin.Answer(303, {}), "ok")
        return Response(303, b"", headers=[("Location", "/"), self.admin_api.sessions.cookie(None, environ)])
