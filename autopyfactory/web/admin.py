"""The admin API: its bearer token, its actions and their audit trail.

    POST reload | stop | loglevel | queues/<name>/pause | queues/<name>/drain | queues/<name>/resume
    GET  config | log?lines=N | audit?limit=N | threads | debug

The token lives in ``[Factory] admin.tokenfile``. The file must be readable
by nobody but its owner (mode 0600 or 0400) and owned by the daemon's user
or root; otherwise the admin API stays disabled and says why. The file is
read again on every request, so rotating the token needs no restart and a
file made readable to others later disables the API at once.

Every call of a known action, refused ones included, is one row of the audit
trail (client address, time, action, target, result) in the persistence
store and one line of the log.
"""

from __future__ import annotations

import hmac
import json
import logging
import logging.handlers
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from autopyfactory import journal
from autopyfactory.config import FactoryConfig
from autopyfactory.logthrottle import LogThrottle
from autopyfactory.queue import Pause
from autopyfactory.records import AdminAction
from autopyfactory.redact import REDACTED, redact, redact_setting
from autopyfactory.timefmt import iso, parse_until
from autopyfactory.web.session import Session, Sessions, cross_origin

if TYPE_CHECKING:
    from autopyfactory.view import FactoryView

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
MAX_BODY = 64 * 1024
DEFAULT_LOG_LINES, MAX_LOG_LINES = 100, 10000
MAX_LOG_BYTES = 4 * 1024 * 1024  # read from the end of the log at most, whatever the lines asked for
DEFAULT_AUDIT, MAX_AUDIT = 100, 10000
MAX_REASON = 500  # characters of a pause's reason

class AdminToken:
    def __init__(self, path: str):
        self.path = path

    def load(self) -> tuple[str | None, str]:
        """(token, "") when the admin API may run, else (None, why not)."""
        if not self.path:
            return None, "admin.tokenfile is not set in [Factory]"
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            return None, f"cannot open admin.tokenfile {self.path}: {exc.strerror or exc}"
        with os.fdopen(fd, encoding="utf-8", errors="replace") as handle:
            info = os.fstat(handle.fileno())
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                return None, (f"admin.tokenfile {self.path} has mode {mode:04o}; "
                              f"it must be readable by its owner only (chmod 600)")
            if info.st_uid not in (os.geteuid(), 0):
                return None, f"admin.tokenfile {self.path} is owned by uid {info.st_uid}, not by this user or root"
            token = handle.read(4096).strip()
        if len(token) < 16:
            return None, f"admin.tokenfile {self.path} holds no token of at least 16 characters"
        return token, ""

    def check(self, authorization: str | None) -> tuple[bool, str]:
        """(allowed, why not) for an ``Authorization`` header."""
        token, why = self.load()
        if token is None:
            return False, f"admin API disabled: {why}"
        scheme, _, offered = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not offered.strip():
            return False, "missing bearer token (Authorization: Bearer <token from admin.tokenfile>)"
        if not hmac.compare_digest(offered.strip().encode(), token.encode()):
            return False, "wrong token"
        return True, ""


def reload_factory(factory: FactoryView) -> tuple[int, dict[str, Any]]:
    """Apply the configuration files again; (HTTP status, JSON answer).

    A configuration with errors is refused whole (400, the problems); the
    running one stays in force.
    """
    problems = [str(p) for p in factory.reload()]
    if problems:
        log.error("reload refused, the running configuration stays: %s", "; ".join(problems))
        return 400, {"error": "configuration has errors; the running configuration stays",
                     "problems": problems}
    changes = factory.last_reload
    if changes is not None:
        changes = {**changes, "time": iso(changes.get("time"))}
    return 200, {"reloaded": True, "message": "configuration reloaded", "changes": changes}


def set_loglevel(level: str) -> str:
    level = level.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"unknown log level (expected one of {', '.join(LOG_LEVELS)}, got {level!r})")
    logging.getLogger().setLevel(level.upper())
    return level


def read_body(environ: dict) -> dict[str, str]:
    """The request's parameters: a JSON object body, a form body, and ``?name=value`` (the body wins).
    Read once: the answer is kept in the environ (the page's CSRF check and the action both read it)."""
    if "apf.params" not in environ:
        environ["apf.params"] = _read_body(environ)
    return environ["apf.params"]


def _read_body(environ: dict) -> dict[str, str]:
    params = {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise ValueError("request body too large")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from None
        params.update({key: value for key, value in data.items() if isinstance(value, str)})
    elif text:
        params.update({key: values[0] for key, values in parse_qs(text).items()})
    return params


def read_level(environ: dict) -> str:
    """The level from a JSON body ``{"level": ...}``, a form body or ``?level=``."""
    level = read_body(environ).get("level")
    if not level:
        raise ValueError("no level given (expected a JSON body {\"level\": \"debug\"})")
    return level


def read_pause(environ: dict, mode: str, now: float) -> Pause:
    """The pause asked for: body ``{"reason": "…", "until": "2026-12-02T06:00Z" or "+2h"}``, both optional."""
    params = read_body(environ)
    reason = printable(params.get("reason", "").strip(), MAX_REASON)
    until = params.get("until", "").strip()
    return Pause(mode, reason, parse_until(until, now) if until else None, now)


# ---------------------------------------------------------------- the effective configuration, redacted


def redact_profile(key: str, value: Any, selector: str) -> Any:
    """auth.conf holds credentials: only its plugin names, numbers and booleans are shown."""
    if key == selector or isinstance(value, bool | int | float) or value in (None, "", []):
        return value
    return REDACTED


def effective_config(config: FactoryConfig) -> dict:
    """What the factory runs from, as JSON: secrets, credential paths and URL passwords are "<redacted>"."""
    def section(values: dict, redactor: Callable[[str, Any], Any]) -> dict:
        return {key: redactor(key, value) for key, value in sorted(values.items())}

    return {
        "path": config.path,
        "factory": section(config.factory.values, redact_setting),
        "queues": {name: {"source": q.source, "enabled": q.enabled and bool(config.get("enablequeues")),
                          "values": section(q.values, redact_setting)} for name, q in config.queues.items()},
        "auth": {name: {"source": p.source,
                        "values": section(p.values, lambda k, v: redact_profile(k, v, "plugin"))}
                 for name, p in config.auth.items()},
        "monitor": {name: {"source": p.source, "values": section(p.values, redact_setting)}
                    for name, p in config.monitor.items()},
        "warnings": [redact(str(w)) for w in config.warnings],
    }


# ---------------------------------------------------------------- the daemon's own log


def log_file() -> tuple[str | None, str]:
    """(path of the file the factory logs to, "") or (None, where it logs instead)."""
    handlers = logging.getLogger().handlers
    for handler in handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename, ""
    targets = []
    for handler in handlers:
        stream = getattr(handler, "stream", None)
        if handler.get_name() == journal.HANDLER_NAME:
            return None, journal.HANDLER_NAME
        if isinstance(handler, logging.handlers.SysLogHandler):
            targets.append("syslog")
        elif stream is not None and stream in (sys.stdout, sys.__stdout__):
            targets.append("stdout")
        elif stream is not None and stream in (sys.stderr, sys.__stderr__):
            targets.append("stderr")
        else:
            targets.append(type(handler).__name__)
    return None, ", ".join(targets) or "nowhere"


def tail(path: str, lines: int, max_bytes: int = MAX_LOG_BYTES) -> tuple[list[str], bool]:
    """The last ``lines`` lines of ``path``, reading at most ``max_bytes`` from its end.

    Returns (lines, cut): ``cut`` is true when the byte bound stopped the
    reading before ``lines`` whole lines were found.
    """
    block = 64 * 1024
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        start, data = end, b""
        while start > 0 and data.count(b"\n") <= lines and end - start < max_bytes:
            step = min(block, start, max_bytes - (end - start))
            start -= step
            handle.seek(start)
            data = handle.read(step) + data
    found = data.decode("utf-8", "replace").splitlines()
    partial = start > 0  # the first line read may be the end of a longer one
    if partial:
        found = found[1:]
    return found[-lines:], partial and len(found) < lines


# ---------------------------------------------------------------- the API


def query_int(environ: dict, name: str, default: int, maximum: int) -> int:
    raw = parse_qs(environ.get("QUERY_STRING", "")).get(name, [str(default)])[0]
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer from 1 to {maximum}, got {raw!r}") from None
    if not 1 <= value <= maximum:
        raise ValueError(f"{name} must be an integer from 1 to {maximum}, got {value}")
    return value


@dataclass
class Answer:
    """What an action answers, and what the audit trail says of it."""

    status: int
    body: dict
    detail: str = ""
    target: str | None = None
    headers: list = field(default_factory=list)
    then: Callable[[], None] | None = None  # run after the audit row is written


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, control characters as "?": what a client sent
    (a queue name in the path) goes into the log and the store, never a forged log line or a huge row."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return cleaned + "…" if len(text) > limit else cleaned


# action: HTTP method
ACTIONS = {"reload": "POST", "stop": "POST", "loglevel": "POST", "pause": "POST", "drain": "POST",
           "resume": "POST", "config": "GET", "log": "GET", "audit": "GET", "threads": "GET", "debug": "GET"}
QUEUE_ACTIONS = ("pause", "drain", "resume")  # POST /api/v1/admin/queues/<name>/<action>
CHANGES = {"reload", "stop", "loglevel", *QUEUE_ACTIONS}  # logged as warnings


def parse_action(path: str) -> tuple[str, str | None] | None:
    """(action, queue) of the path below /api/v1/admin/, None for an unknown one."""
    parts = [p for p in path.split("/") if p]
    if len(parts) == 3 and parts[0] == "queues" and parts[2] in QUEUE_ACTIONS:
        return parts[2], parts[1]
    if len(parts) == 1 and parts[0] in ACTIONS and parts[0] not in QUEUE_ACTIONS:
        return parts[0], None
    return None


class AdminAPI:
    """The admin endpoints over one factory; ``queue_view`` renders a queue as the JSON API does."""

    def __init__(self, factory: FactoryView, queue_view: Callable[[Any], dict]):
        self.factory = factory
        self.queue_view = queue_view
        self.token = AdminToken(factory.config.get("admin.tokenfile", ""))
        self.allow_remote = bool(factory.config.get("admin.allowremote", False))
        self._reload_lock = threading.Lock()  # one reload at a time
        self.sessions = Sessions(factory.config.get("admin.sessiontimeout"))
        self.throttle = LogThrottle()  # refused and failed calls: one log line per client and interval

    @property
    def store(self):
        store = self.factory.store
        return store if store is not None and store.usable else None

    def handle(self, environ: dict, path: str, is_local: bool) -> Answer:
        """Answer ``path`` (below /api/v1/admin/) for a client; ``is_local``: on the loopback interface."""
        parsed = parse_action(path)
        if parsed is None:
            return Answer(404, {"error": f"no admin action {path!r}",
                                "actions": sorted(a for a in ACTIONS if a not in QUEUE_ACTIONS)
                                + [f"queues/<name>/{a}" for a in QUEUE_ACTIONS]})
        action, queue = parsed
        method = environ.get("REQUEST_METHOD", "GET")
        allowed = ACTIONS[action]
        if method != allowed and not (method == "HEAD" and allowed == "GET"):
            allow = "GET, HEAD" if allowed == "GET" else "POST"
            return Answer(405, {"error": f"admin {action} is a {allowed} request"}, headers=[("Allow", allow)])
        client = environ.get("REMOTE_ADDR") or "?"
        refusal = self.refusal(environ, is_local)
        if refusal is not None:
            refusal.target = queue
            self.audit(client, action, refusal, "refused")
            return refusal
        try:
            answer = getattr(self, f"do_{action}")(environ, queue)
        except ValueError as exc:  # a bad parameter
            answer = Answer(400, {"error": str(exc)}, str(exc), queue)
        self.audit(client, action, answer, "ok" if answer.status < 400 else "failed")
        if answer.then is not None:
            answer.then()
        return answer

    def refusal(self, environ: dict, is_local: bool) -> Answer | None:
        if not self.allow_remote and not is_local:
            why = "the admin API answers on the loopback interface only (admin.allowremote = false)"
            return Answer(403, {"error": why}, why)
        session = None if environ.get("HTTP_AUTHORIZATION") else self.page_session(environ)
        if session is not None:  # a form of the pages, signed in: the session's CSRF token, from this site
            why = ""
            if cross_origin(environ):
                why = "refused: the request comes from a page of another site (Origin)"
            elif environ.get("REQUEST_METHOD") == "POST" and not Sessions.csrf_ok(session, read_body(environ).get("csrf")):
                why = "refused: missing or wrong CSRF token (use the forms of the factory's pages)"
            return Answer(403, {"error": why}, why) if why else None
        allowed, why = self.token.check(environ.get("HTTP_AUTHORIZATION"))
        if allowed:
            return None
        status = 403 if why.startswith("admin API disabled") else 401
        return Answer(status, {"error": why}, why, headers=[("WWW-Authenticate", 'Bearer realm="autopyfactory"')])

    def page_session(self, environ: dict) -> Session | None:
        """The signed-in session of a page request (cookie), while the admin API is enabled and its token
        is the one the session signed in with."""
        token, _ = self.token.load()
        return self.sessions.find(environ, token)

    def audit(self, client: str, action: str, answer: Answer, result: str) -> None:
        target = None if answer.target is None else printable(redact(answer.target), 200)
        entry = AdminAction(time.time(), printable(client, 100), action, target, result, answer.status,
                            printable(redact(answer.detail), 1000))
        level = logging.WARNING if result == "refused" or action in CHANGES else logging.INFO
        # refused or failed: a flood of them is one log line per client and interval (each is in the audit)
        allowed, held = self.throttle.allow(entry.client) if answer.status >= 400 else (True, 0)
        if allowed:
            log.log(level, "admin %s%s from %s: %s%s%s", action, f" {target}" if target else "", entry.client,
                    result, f" ({entry.detail})" if entry.detail else "",
                    f"; {held} more refused or failed call(s) from {entry.client} since its last logged one, "
                    f"not logged (the audit trail has each)" if held else "")
        if self.store is not None:
            self.store.record_admin(entry)

    def recent(self, limit: int = DEFAULT_AUDIT) -> list[dict] | None:
        """The latest admin actions as JSON, newest first; None without a store."""
        store = self.store
        return None if store is None else [a.to_dict() for a in store.admin_actions(limit)]

    # ------------------------------------------------------------ actions
    def do_reload(self, environ: dict, _queue: None) -> Answer:
        # one at a time, and the others answered at once: reloads asked while one is under way
        # (a slow remote queueConf) must not hold every web worker
        if not self._reload_lock.acquire(blocking=False):
            why = "a reload is already under way; ask again when it has ended"
            return Answer(409, {"error": why}, why)
        try:
            status, body = reload_factory(self.factory)
        finally:
            self._reload_lock.release()
        if status >= 400:
            return Answer(status, body, "; ".join(body.get("problems", []))[:1000] or body.get("error", ""))
        changes = body.get("changes") or {}
        summary = ", ".join(f"{key} {','.join(changes[key])}" for key in ("added", "removed", "changed")
                            if changes.get(key))
        return Answer(status, body, summary or "nothing changed")

    def do_pause(self, environ: dict, name: str) -> Answer:
        return self.hold(environ, name, "paused")

    def do_drain(self, environ: dict, name: str) -> Answer:
        return self.hold(environ, name, "drained")

    def do_resume(self, environ: dict, name: str) -> Answer:
        return self.hold(environ, name, None)

    def hold(self, environ: dict, name: str, mode: str | None) -> Answer:
        """Pause or drain the queue (``mode``), or resume it (None)."""
        queue = self.factory.queues.get(name)
        if queue is None and name in self.factory.config.enabled_queues and name not in self.factory.config.invalid:
            # configured, not started yet (the web answers while the queues start, e.g. right after a restart)
            return Answer(503, {"error": f"queue {name!r} is starting; retry in a few seconds"},
                          "queue starting", name, headers=[("Retry-After", "5")])
        if queue is None:
            return Answer(404, {"error": f"no queue {name!r}", "queues": sorted(self.factory.queues)},
                          "no such queue", name)
        pause = None if mode is None else read_pause(environ, mode, time.time())
        before = queue.pause
        queue.set_pause(pause)
        if pause is not None:
            detail = pause.describe()
        else:
            detail = f"was {before.describe()}" if before is not None else "was not paused"
        return Answer(200, self.queue_view(queue), detail, name)

    def do_loglevel(self, environ: dict, _queue: None) -> Answer:
        try:
            wanted = read_level(environ)
        except ValueError as exc:
            return Answer(400, {"error": str(exc)}, str(exc))
        before = logging.getLevelName(logging.getLogger().level).lower()
        try:
            level = set_loglevel(wanted)
        except ValueError as exc:
            return Answer(400, {"error": str(exc)}, str(exc), wanted[:40])
        return Answer(200, {"loglevel": level}, f"was {before}", level)

    def do_config(self, environ: dict, _queue: None) -> Answer:
        return Answer(200, effective_config(self.factory.config))

    def do_log(self, environ: dict, _queue: None) -> Answer:
        lines = query_int(environ, "lines", DEFAULT_LOG_LINES, MAX_LOG_LINES)
        path, target = log_file()
        if target == journal.HANDLER_NAME:  # not a file: apf reads it with journalctl, as root or the journal's group
            unit = journal.own_unit() or journal.DEFAULT_UNIT
            argv = journal.command(unit, lines)
            why = f"the factory logs to the journal: read it with {journal.shown(argv)}"
            return Answer(409, {"error": why, "log_target": "journal", "unit": unit, "command": argv}, why, str(lines))
        if path is None:
            why = (f"the factory logs to {target}, not to a file: read it there "
                   f"(journalctl or the syslog files; start the daemon with --log PATH to use this)")
            return Answer(409, {"error": why, "log_target": target}, why, str(lines))
        try:
            found, cut = tail(path, lines)
        except OSError as exc:
            why = f"cannot read the log file {path}: {exc.strerror or exc}"
            return Answer(500, {"error": why}, why, str(lines))
        return Answer(200, {"file": path, "lines": found, "cut": cut}, f"{len(found)} line(s)", str(lines))

    def do_audit(self, environ: dict, _queue: None) -> Answer:
        limit = query_int(environ, "limit", DEFAULT_AUDIT, MAX_AUDIT)
        actions = self.recent(limit)
        if actions is None:
            why = "no persistence store: the audit trail is in the log only"
            return Answer(503, {"error": why}, why, str(limit))
        return Answer(200, {"actions": actions}, f"{len(actions)} action(s)", str(limit))

    def do_threads(self, environ: dict, _queue: None) -> Answer:
        # what SIGUSR1 logs, answered to a remote operator instead (and not logged: the audit says who asked)
        lines = redact(self.factory.thread_dump()).splitlines()
        threads = sum(1 for line in lines if line.startswith("--- thread "))
        return Answer(200, {"threads": threads, "dump": lines}, f"{threads} thread(s)")

    def do_debug(self, environ: dict, _queue: None) -> Answer:
        info = self.factory.debug_info()
        sources = info["config_sources"]
        sources["queues"] = [redact(source) for source in sources["queues"]]
        for endpoint in info["endpoints"]:
            endpoint["endpoint"] = redact(str(endpoint["endpoint"]))
            if endpoint["last_error"]:
                endpoint["last_error"] = redact(str(endpoint["last_error"]))
        return Answer(200, info)

    def do_stop(self, environ: dict, _queue: None) -> Answer:
        # as SIGTERM: the main thread stops the factory; cycles under way finish their submission
        return Answer(202, {"stopping": True, "message": "stopping: cycles under way finish first"},
                      then=self.factory.request_stop)
