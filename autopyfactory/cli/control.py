"""``apf status | reload | pause | drain | resume | loglevel | config | log | audit | stop``: talk to a running factory.

The factory's URL and admin token file come from ``[Factory]`` of the
factory.conf given with ``--conf`` (``logserver.bind``, ``logserver.port``,
``admin.tokenfile``), or from ``--url`` and ``--token-file``. Only those keys
are read, so a factory whose queue files are broken can still be asked to
reload and show its problems.

Exit codes: 0 done, 1 the factory refused (bad token, unknown queue, bad
config on reload), 2 usage or local config problem, 3 factory unreachable.
``apf status`` exits like a monitoring check instead: 0 every queue ok,
paused, drained or disabled; 1 any warning; 2 any critical; 3 the factory
cannot be reached (or does not know the QUEUE asked for).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import sys
from collections import Counter
from typing import Any
from urllib.parse import quote

import requests

from autopyfactory import journal, tls
from autopyfactory.config import FACTORY_KEYS, FACTORY_SECTION
from autopyfactory.health import LEVELS, one_line
from autopyfactory.timefmt import duration, parse_until
from autopyfactory.tls import CAMissing, ca_trust

MAX_LOG_LINES = 10000  # as the admin API bounds apf log
TIMEOUT = (5.0, 60.0)  # connect, read (a reload may take a while)
REASON_CHARS = 80  # health reasons and errors in the tables: one short line each
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I)


class ControlError(Exception):
    def __init__(self, message: str, code: int, answer: Any = None):
        super().__init__(message)
        self.code = code
        self.answer = answer  # the factory's JSON answer to a refused call, when it gave one


def factory_endpoint(conf: str) -> tuple[str, str]:
    """(base URL, token file) from ``[Factory]`` of ``conf``."""
    value = factory_keys(conf)
    bind = value("logserver.bind") or "127.0.0.1"
    host = "127.0.0.1" if bind in ("0.0.0.0", "*") else ("::1" if bind == "::" else bind)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{value('logserver.port')}", value("admin.tokenfile") or ""


def web_server_enabled(conf: str) -> bool:
    """``logserver.enabled`` of ``conf``: whether the factory serves the API ``apf`` talks to."""
    return bool(factory_keys(conf)("logserver.enabled"))


def factory_keys(conf: str):
    """``value(key)``: a ``[Factory]`` key of ``conf``, parsed (its default when unset)."""
    parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation())
    try:
        with open(conf, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error) as exc:
        raise ControlError(f"cannot read {conf}: {exc}", 2) from None
    if not parser.has_section(FACTORY_SECTION):
        raise ControlError(f"{conf}: no [{FACTORY_SECTION}] section", 2)
    section = parser[FACTORY_SECTION]
    basedir = os.path.dirname(os.path.abspath(conf))

    def value(key: str):
        raw = section.get(key)
        spec = FACTORY_KEYS[key]
        if raw is None:
            return spec.default
        try:
            return spec.parse(raw, basedir)
        except ValueError as exc:
            raise ControlError(f"{conf}: [{FACTORY_SECTION}] {key}: {exc}", 2) from None

    return value


def read_token(path: str) -> str:
    if not path:
        raise ControlError("no admin token file (set admin.tokenfile in [Factory] or give --token-file)", 2)
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(4096).strip()
    except OSError as exc:
        raise ControlError(f"cannot read the admin token file {path}: {exc.strerror or exc}", 2) from None


class Client:
    def __init__(self, url: str, token_file: str = ""):
        self.url = url.rstrip("/")
        self.token_file = token_file
        self.session = tls.session()

    def call(self, method: str, path: str, admin: bool = False, **kwargs) -> Any:
        headers = {"Accept": "application/json"}
        if admin:
            headers["Authorization"] = f"Bearer {read_token(self.token_file)}"
        cas = ca_trust()  # an https --url (a proxy in front of the factory) is checked like every HTTPS client
        try:
            answer = self.session.request(method, self.url + path, headers=headers, timeout=TIMEOUT,
                                          verify=cas.verify(self.url), **kwargs)
        except (requests.RequestException, CAMissing) as exc:
            hint = cas.explain(exc)
            raise ControlError(f"cannot reach the factory at {self.url}: {exc}" + (f" ({hint})" if hint else "")
                               + "\nis it running? (systemctl status autopyfactory); apf status, config and audit "
                               "--local read the configuration files and the local store instead", 3) from None
        try:
            data = answer.json()
        except ValueError:
            data = {"error": answer.text.strip()[:500]}
        if answer.status_code >= 400:
            message = data.get("error", "") if isinstance(data, dict) else str(data)
            problems = data.get("problems", []) if isinstance(data, dict) else []
            raise ControlError("\n".join([f"factory answered {answer.status_code}: {message}", *problems]), 1, data)
        return data


# ---------------------------------------------------------------- output


def show(value: Any) -> str:
    return "?" if value is None else str(value)


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_status(factory: dict, queues: list[dict]) -> str:
    """The factory, its queues (problems first), credentials and endpoints as tables; one line per cell."""
    reload = factory.get("last_reload")
    reloaded = "" if not reload else f"  last reload {reload.get('time')} {'ok' if reload.get('ok') else 'REJECTED'}"
    counts = Counter(q.get("health") for q in queues)
    lines = [
        f"factory {factory.get('factory_id')}  version {factory.get('version')}  host {factory.get('host', '?')}",
        f"started {factory.get('started')}  last cycle {factory.get('last_cycle') or 'none yet'}{reloaded}",
        "queues: " + (", ".join(f"{counts[level]} {level}" for level in LEVELS if counts[level]) or "none"),
        *(f"FACTORY PROBLEM: {one_line(problem, 300)}" for problem in factory.get("problems") or []),
        "",
    ]
    rows = []
    for q in sorted(queues, key=lambda q: (rank(q.get("health")), q["name"])):
        wms = q.get("wms") or {}
        rows.append([
            q["name"], q.get("health") or "?", show(q.get("pending")), show(q.get("running")),
            show(q.get("exiting")), show(q.get("done_1h")), show(q.get("fault_1h")),
            show(wms.get("ready")), show(wms.get("running")), q.get("last_cycle") or "-",
            one_line(q.get("health_reason") or "", REASON_CHARS),
        ])
    lines.append(table(["QUEUE", "HEALTH", "PENDING", "RUNNING", "EXITING", "DONE1H", "FAULT1H",
                        "WMSREADY", "WMSRUN", "LAST CYCLE", "REASON"], rows, right={2, 3, 4, 5, 6, 7, 8}))
    credentials = factory.get("credentials") or []
    if credentials:
        lines += ["", table(["CREDENTIAL", "STATE", "LEFT", "MESSAGE"], [
            [c["profile"], "ok" if c["ok"] else "NOT USABLE", duration(c.get("seconds_left")),
             one_line(c.get("message") or "", REASON_CHARS)] for c in credentials], right={2})]
    endpoints = factory.get("endpoints") or []
    if endpoints:
        lines += ["", table(["ENDPOINT", "KIND", "STATE", "LAST ERROR"], [
            [e["endpoint"], e["kind"], endpoint_state(e), error_line(e.get("last_error") or "")]
            for e in endpoints])]
    return "\n".join(lines)


def error_line(error: str) -> str:
    """An endpoint's error in one short line: URLs (the endpoint column names it) left out; --json has it all."""
    return one_line(URL.sub("…", error), REASON_CHARS)


def endpoint_state(endpoint: dict) -> str:
    if endpoint.get("consecutive_failures"):
        return f"FAILING x{endpoint['consecutive_failures']}" + (" (breaker open)" if endpoint.get("breaker") == "open"
                                                                 else "")
    return "healthy" if endpoint.get("healthy") else "STALE"


def rank(level: str | None) -> int:
    return LEVELS.index(level) if level in LEVELS else -1  # an unknown level sorts first


def check_code(queues: list[dict], factory: dict | None = None) -> int:
    """Exit code of a monitoring check: 2 any queue critical, 1 any warning or factory problem, 0 otherwise."""
    levels = {q.get("health") for q in queues}
    if "critical" in levels:
        return 2
    return 1 if "warning" in levels or (factory or {}).get("problems") else 0


# ---------------------------------------------------------------- commands


def client_for(args: argparse.Namespace) -> Client:
    url, token_file = (args.url, "") if args.url else factory_endpoint(args.conf)
    return Client(url, args.token_file or token_file)


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    try:
        factory = client.call("GET", "/api/v1/factory")
        if args.queue:
            queues = [client.call("GET", f"/api/v1/queues/{quote(args.queue, safe='')}", params={"cycles": 0})]
            queues[0].pop("cycles", None)
        else:
            queues = client.call("GET", "/api/v1/queues")["queues"]
    except ControlError as exc:  # no answer, or an error instead of one: the check cannot tell (UNKNOWN)
        raise ControlError(str(exc), 3) from None
    if args.json:
        print(json.dumps({"factory": factory, "queues": queues}, indent=1))
    else:
        print(format_status(factory, queues))
    return check_code(queues, factory)


def cmd_reload(args: argparse.Namespace, client: Client) -> None:
    answer = client.call("POST", "/api/v1/admin/reload", admin=True)
    print(answer.get("message", "reloaded"))
    for warning in answer.get("warnings", []):
        print(f"warning: {warning}")
    changes = answer.get("changes")
    if isinstance(changes, dict):
        for key, value in changes.items():
            if key == "invalid" and isinstance(value, list):  # errors of queues: those queues are left as they were
                for problem in value:
                    print(f"invalid queue: {problem}")
                continue
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")


HOLDS = {"paused": "it keeps reporting, submits nothing",
         "drained": "it submits nothing and removes its pilots that have not started; running ones finish"}


def cmd_pause(args: argparse.Namespace, client: Client) -> None:
    """apf pause | drain | resume QUEUE."""
    body = {}
    if args.command != "resume":
        if args.until:
            try:
                parse_until(args.until)  # said here, before asking the factory
            except ValueError as exc:
                raise ControlError(f"--until: {exc}", 2) from None
        body = {"reason": args.reason or "", "until": args.until or ""}
    answer = client.call("POST", f"/api/v1/admin/queues/{quote(args.queue, safe='')}/{args.command}", admin=True,
                         json=body)
    pause = answer.get("pause")
    if pause:
        until = f" until {pause['until']}" if pause.get("until") else ""
        reason = f" ({pause['reason']})" if pause.get("reason") else ""
        print(f"queue {answer.get('name', args.queue)} {pause['mode']}{until}{reason}: {HOLDS.get(pause['mode'], '')}")
    else:
        print(f"queue {answer.get('name', args.queue)} active")


def cmd_loglevel(args: argparse.Namespace, client: Client) -> None:
    answer = client.call("POST", "/api/v1/admin/loglevel", admin=True, json={"level": args.level})
    print(f"log level now {answer.get('loglevel')}")


def format_config(data: dict, title: str = "") -> str:
    """The running configuration (as the admin API gives it, redacted) in factory.conf syntax."""
    lines = [title or f"# running configuration, from {data.get('path')}; secrets and credential paths <redacted>",
             "[Factory]"]

    def keys(values: dict) -> None:
        for key, value in values.items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else "" if value is None else value
            lines.append(f"{key} = {shown}")

    keys(data.get("factory", {}))
    for kind in ("queues", "auth", "monitor"):
        for name, section in data.get(kind, {}).items():
            state = "" if kind != "queues" else " (enabled)" if section.get("enabled") else " (disabled)"
            lines += ["", f"# {section.get('source')}{state}", f"[{name}]"]
            keys(section.get("values", {}))
    lines += [f"# warning: {w}" for w in data.get("warnings", [])]
    return "\n".join(lines)


def cmd_config(args: argparse.Namespace, client: Client) -> None:
    data = client.call("GET", "/api/v1/admin/config", admin=True)
    print(json.dumps(data, indent=1) if args.json else format_config(data))


UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:_.@-]*\.service$")  # a name journalctl -u takes, nothing else


def cmd_log(args: argparse.Namespace, client: Client) -> int | None:
    try:
        data = client.call("GET", "/api/v1/admin/log", admin=True, params={"lines": args.lines})
    except ControlError as exc:
        said = exc.answer if isinstance(exc.answer, dict) else {}
        if said.get("log_target") != "journal":
            raise
        unit = str(said.get("unit") or "")
        return journal_log(args.unit or (unit if UNIT.match(unit) else journal.DEFAULT_UNIT), args.lines)
    for line in data.get("lines", []):
        print(line)
    if data.get("cut"):
        print(f"apf log: fewer lines than asked: the factory reads a bounded tail of {data.get('file')}",
              file=sys.stderr)


def journal_log(unit: str, lines: int) -> int:
    """``apf log`` of a factory logging to the journal: journalctl -u UNIT, run here (argv, no shell)."""
    lines = max(1, min(lines, MAX_LOG_LINES))
    try:
        found, remarks = journal.read(unit, lines)
    except journal.JournalUnreadable as exc:
        raise ControlError(str(exc), 1) from None
    for line in found:
        print(line)
    if remarks:  # e.g. not allowed to read the system journal: journalctl's hint says which groups may
        print(f"apf log: journalctl: {remarks}", file=sys.stderr)
    if not found:
        print(f"apf log: no journal lines for {unit}; a factory started by the init script logs to APF_LOG "
              "of /etc/sysconfig/autopyfactory instead", file=sys.stderr)
    print(f"apf log: from the journal: {journal.shown(journal.command(unit, lines))}", file=sys.stderr)
    return 0


def format_audit(actions: list[dict]) -> str:
    return table(["TIME", "CLIENT", "ACTION", "TARGET", "RESULT", "DETAIL"], [
        [a.get("time") or "?", a.get("client") or "?", a.get("action") or "?", a.get("target") or "-",
         a.get("result") or "?", (a.get("detail") or "")[:100]] for a in actions])


def cmd_audit(args: argparse.Namespace, client: Client) -> None:
    data = client.call("GET", "/api/v1/admin/audit", admin=True, params={"limit": args.limit})
    print(json.dumps(data, indent=1) if args.json else format_audit(data.get("actions", [])))


def format_history(name: str, cycles: list[dict]) -> str:
    """A queue's latest cycles (the API's cycle views, newest first) as a table."""
    def number(part: dict | None, key: str) -> str:
        return show((part or {}).get(key)) if part is not None else "?"

    return table(["CYCLE", "STARTED", "WMSREADY", "PENDING", "RUNNING", "DECIDED", "SUBMITTED", "MESSAGE"], [
        [show(c.get("number")), c.get("started") or "?", number(c.get("wms"), "ready"),
         number(c.get("batch"), "pending"), number(c.get("batch"), "running"), show(c.get("decided")),
         show(c.get("submitted")), one_line(c.get("message") or "", REASON_CHARS)] for c in cycles],
        right={0, 2, 3, 4, 5, 6}) if cycles else f"queue {name}: no cycle recorded yet"


def cmd_history(args: argparse.Namespace, client: Client) -> None:
    data = client.call("GET", f"/api/v1/queues/{quote(args.queue, safe='')}", params={"cycles": args.cycles})
    cycles = data.get("cycles", [])
    print(json.dumps({"queue": args.queue, "cycles": cycles}, indent=1) if args.json
          else format_history(args.queue, cycles))


def cmd_threads(args: argparse.Namespace, client: Client) -> None:
    data = client.call("GET", "/api/v1/admin/threads", admin=True)
    print("\n".join(data.get("dump", [])))


def format_debug(data: dict) -> str:
    lines = [f"factory {data.get('factory_id')} (pid {data.get('pid')}, {data.get('threads')} threads), "
             f"started {data.get('started')}, last cycle {data.get('last_cycle') or '-'}"]
    lines += [f"  {name} {version or 'not installed'}" for name, version in (data.get("versions") or {}).items()]
    sources = data.get("config_sources") or {}
    lines.append("config:")
    lines += [f"  {key}: {value}" for key, value in sources.items() if key != "queues"]
    lines += [f"  queues from: {source}" for source in sources.get("queues", [])]
    store = data.get("store")
    lines.append("store: none" if not store else
                 f"store: {store['path']} {store['bytes'] / 1e6:.1f} MB{'' if store['usable'] else ' (not usable)'}"
                 + (f": {store['problem']}" if store.get("problem") else ""))
    lines.append("endpoints:")
    for e in data.get("endpoints") or []:
        lines.append(f"  {e['kind']} {e['plugin']} {e['endpoint']}: {len(e['queues'])} queue(s), {e['calls']} call(s), "
                     f"{e['consecutive_failures']} failure(s) in a row"
                     + (f", last error: {e['last_error']}" if e.get("last_error") else ""))
    return "\n".join(lines)


def cmd_debug(args: argparse.Namespace, client: Client) -> None:
    data = client.call("GET", "/api/v1/admin/debug", admin=True)
    print(json.dumps(data, indent=1) if args.json else format_debug(data))


def cmd_stop(args: argparse.Namespace, client: Client) -> None:
    answer = client.call("POST", "/api/v1/admin/stop", admin=True)
    print(f"factory at {client.url}: {answer.get('message', 'stopping')}")
