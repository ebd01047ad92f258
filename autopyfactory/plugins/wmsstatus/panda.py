"""The PanDA WMS: job statistics per site from the PanDA server's REST API.

One instance per PanDA endpoint, polled from one thread: one HTTP request per
interval serves every queue on the endpoint, however many there are. The
answer is JSON, parsed once per poll (``json.loads``); nothing from the
network is ever unpickled or evaluated.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from autopyfactory import tls
from autopyfactory.config import Key
from autopyfactory.info import WMSQueueInfo
from autopyfactory.interfaces import WMSStatusPlugin
from autopyfactory.status import Unknown
from autopyfactory.tls import CAMissing, ca_trust

STATS_PATH = "/statistics/active_job_stats_by_site"
# The PanDA server APF 2.4 talked to (through the panda client: https://pandaserver.cern.ch:25443/server/panda),
# at its REST API: APF 2.4 sites never set a URL, so theirs is the default (docs/wms.md).
DEFAULT_URL = "https://pandaserver.cern.ch:25443/api/v1"

# PanDA job status -> WMSQueueInfo field (the table in docs/semantics.md).
# States not listed (e.g. new ones) are not counted.
JOB_STATES: dict[str, str] = {
    "pending": "notready",
    "defined": "notready",
    "assigned": "notready",
    "waiting": "notready",
    "throttled": "notready",
    "activated": "ready",
    "starting": "running",
    "sent": "running",
    "running": "running",
    "holding": "running",
    "transferring": "running",
    "finished": "done",
    "failed": "failed",
    "cancelled": "failed",
    "closed": "failed",
}

QUEUE_STATES = ("online", "offline", "test", "brokeroff")
CHUNK = 64 * 1024


class PandaError(Exception):
    """PanDA did not give a usable answer (the status is then unknown)."""


def _short(text: Any, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def site_info(counts: Any, status: str) -> WMSQueueInfo | Unknown:
    """One site's ``{JOBSTATUS: COUNT}`` mapped to WMSQueueInfo (Unknown if malformed)."""
    if not isinstance(counts, dict):
        return Unknown(f"job statistics entry is {type(counts).__name__}, not an object")
    totals = {"notready": 0, "ready": 0, "running": 0, "done": 0, "failed": 0}
    for state, count in counts.items():
        field = JOB_STATES.get(state)
        if field is None:
            continue
        if type(count) is not int or count < 0:
            return Unknown(f"job statistics: count of {state!r} is {_short(repr(count), 40)}, not a number >= 0")
        totals[field] += count
    return WMSQueueInfo(status=status, **totals)


def _read_body(answer: requests.Response, deadline: float, maxbytes: int, what: str, late: str) -> bytearray:
    """The body, read until ``maxbytes`` at most and until the ``deadline`` (monotonic) at the latest.

    Each read has the request's read timeout, but a server trickling a byte
    now and then never lets one expire: a watchdog shuts the socket down at
    the deadline, which ends the read under way.
    """
    sock = getattr(getattr(answer.raw, "connection", None), "sock", None)
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (sock,))
    watchdog.daemon = True
    if sock is not None:
        watchdog.start()
    try:
        body = bytearray()
        for chunk in answer.iter_content(CHUNK):
            body += chunk
            if len(body) > maxbytes:
                raise PandaError(f"{what}: answer larger than maxbytes {maxbytes}, not read further")
            if time.monotonic() > deadline:
                raise PandaError(late)
        if time.monotonic() > deadline:  # cut short by the watchdog
            raise PandaError(late)
        return body
    except requests.RequestException:
        if time.monotonic() > deadline:  # cut by the watchdog
            raise PandaError(late) from None
        raise
    finally:
        watchdog.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also under TLS


class Panda(WMSStatusPlugin):
    """Jobs waiting in PanDA per PanDA queue (``wmsqueue`` = PanDA site/queue name).

    Keys (``wmsstatus.panda.*``, per queue; the ones marked * identify the
    endpoint, so queues sharing them share one poll):

    - ``url`` * (required): API base, e.g. ``https://pandaserver.example.org:25443/api/v1``;
      the factory GETs ``<url>/statistics/active_job_stats_by_site``.
    - ``queueinfourl`` *: JSON ``{QUEUE: {"status": ...}}`` (CRIC pandaqueue listing)
      giving online/offline/test/brokeroff; without it every queue is online.
    - ``proxy`` *: auth.conf profile whose proxy file is the client certificate.
    - ``tokenfile`` *: file holding a bearer token (re-read at every poll).
    - ``capath`` *: CA directory (hashed) or bundle; default: ``X509_CERT_DIR``, else
      ``/etc/grid-security/certificates`` when it exists, else the system CAs (autopyfactory.tls).
    - ``timeout`` (30 s): connect and read timeout, and the limit for a whole answer
      (enforced while reading: a trickling answer is cut at the deadline).
    - ``maxbytes`` (16 MiB): a larger answer is a failure (read is stopped there).

    Returns {wmsqueue: WMSQueueInfo} with PanDA job states mapped to
    notready/ready/running/done/failed. Unknown (never zero): any failure of
    the request (timeout, not 200, not JSON, ``success`` not true, no ``data``
    object, empty ``data``), and per queue a malformed site entry or a queue
    missing from the queue information. A site missing from ``data`` has no
    active jobs (PanDA omits those): zero, not unknown.
    """

    name = "Panda"
    keys = {
        "url": Key("str", DEFAULT_URL, help="PanDA API base URL (…/api/v1); default: the CERN PanDA server"),
        "queueinfourl": Key("str", "", help="URL of the queue information JSON (queue status)"),
        "proxy": Key("str", "", help="auth.conf profile used as client certificate"),
        "tokenfile": Key("path", "", help="file holding a bearer token"),
        "capath": Key("path", "", help="CA directory or bundle (default: X509_CERT_DIR, else "
                      "/etc/grid-security/certificates, else the system CAs)"),
        "timeout": Key("float", 30.0, min=0.1, help="seconds for connect, read and the whole answer"),
        "maxbytes": Key("int", 16 * 1024 * 1024, min=1024, help="largest answer accepted (bytes)"),
    }
    endpoint_keys = ("url", "queueinfourl", "proxy", "tokenfile", "capath")
    default_sleep = 150.0
    default_maxage = 600.0

    @classmethod
    def endpoint_name(cls, options: dict[str, Any]) -> str:
        """The PanDA URL, without any ``user:password@``."""
        url = urlsplit(str(options.get("url") or ""))
        if not url.hostname:
            return url.geturl() or "local"
        host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        return urlunsplit(url._replace(netloc=host + (f":{url.port}" if url.port else "")))

    def __init__(self, options: dict[str, Any], context):
        super().__init__(options, context)
        key = ("panda-session", type(self).endpoint(options))
        capath = options.get("capath") or ""  # an endpoint key: every queue of the session has the same
        self.session: requests.Session = context.shared(key, lambda: tls.session(capath))
        self.requests = 0  # HTTP requests made (job statistics and queue information)

    # ------------------------------------------------------------ request
    def _auth(self) -> dict[str, Any]:
        """requests keyword arguments for credentials (the CAs are fetch_json's)."""
        kwargs: dict[str, Any] = {"headers": {"Accept": "application/json"}}
        profile = self.options.get("proxy")
        if profile:
            state = self.context.credential(profile)
            if state is None:
                raise PandaError(f"credential {profile} not checked yet")
            if not state.ok:
                raise PandaError(f"credential {profile} not usable: {state.message or 'failing'}")
            if not state.path:
                raise PandaError(f"credential {profile} has no proxy file")
            kwargs["cert"] = state.path
        tokenfile = self.options.get("tokenfile")
        if tokenfile:
            try:
                with open(tokenfile, encoding="utf-8") as handle:
                    token = handle.read().strip()
            except OSError as exc:
                raise PandaError(f"cannot read token file {tokenfile}: {exc.strerror or exc}") from None
            if not token:
                raise PandaError(f"token file {tokenfile} is empty")
            kwargs["headers"]["Authorization"] = f"Bearer {token}"
        return kwargs

    def fetch_json(self, url: str, what: str) -> Any:
        """GET ``url`` and parse its JSON body, within ``timeout`` and ``maxbytes``."""
        if not url.startswith(("http://", "https://")):
            raise PandaError(f"{what}: not an http(s) URL: {url!r}")
        timeout = self.options["timeout"]
        maxbytes = self.options["maxbytes"]
        deadline = time.monotonic() + timeout
        late = f"{what}: answer not complete within the timeout of {timeout:g}s"
        self.requests += 1
        cas = ca_trust(self.options.get("capath"), "wmsstatus.panda.capath")
        try:
            verify = cas.verify(url)
        except CAMissing as exc:
            raise PandaError(f"{what}: {exc}") from None
        try:
            with self.session.get(url, timeout=(timeout, timeout), stream=True, verify=verify,
                                  **self._auth()) as answer:
                if answer.status_code != 200:
                    snippet = next(answer.iter_content(200), b"")
                    raise PandaError(
                        f"{what}: HTTP {answer.status_code} {answer.reason or ''}".rstrip()
                        + (f": {_short(snippet.decode('utf-8', 'replace'))}" if snippet else "")
                    )
                declared = answer.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > maxbytes:
                    raise PandaError(f"{what}: answer of {int(declared)} bytes is larger than maxbytes {maxbytes}")
                body = _read_body(answer, deadline, maxbytes, what, late)
        except requests.RequestException as exc:
            hint = cas.explain(exc)
            raise PandaError(f"{what}: {type(exc).__name__}: {_short(exc, 300)}" + (f" ({hint})" if hint else "")) from None
        if body[:1] == b"\x80":
            raise PandaError(f"{what}: answer looks like a Python pickle (old interface); it is never unpickled")
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise PandaError(f"{what}: answer is not valid JSON ({_short(exc, 120)}; {len(body)} bytes)") from None

    # ------------------------------------------------------------ answers
    def job_statistics(self) -> dict[str, Any]:
        """``data`` of the job statistics answer: {SITE: {JOBSTATUS: COUNT}}."""
        url = self.options["url"].rstrip("/") + STATS_PATH
        answer = self.fetch_json(url, f"GET {url}")
        if not isinstance(answer, dict):
            raise PandaError(f"GET {url}: answer is a JSON {type(answer).__name__}, not an object")
        if answer.get("success") is not True:
            message = _short(answer.get("message", ""))
            raise PandaError(f"GET {url}: success is {answer.get('success')!r}" + (f": {message}" if message else ""))
        data = answer.get("data")
        if not isinstance(data, dict):
            raise PandaError(f"GET {url}: 'data' is {type(data).__name__}, not an object of sites")
        if not data:
            raise PandaError(f"GET {url}: 'data' is empty (no site at all)")
        return data

    def queue_statuses(self) -> dict[str, Any] | None:
        """{QUEUE: {"status": ...}} from ``queueinfourl``; None when not configured."""
        url = self.options.get("queueinfourl")
        if not url:
            return None
        answer = self.fetch_json(url, f"GET {url}")
        if not isinstance(answer, dict) or not answer:
            raise PandaError(f"GET {url}: queue information is not a non-empty object of queues")
        return answer

    def poll(self, queues: Collection[str]) -> dict[str, WMSQueueInfo | Unknown]:
        data = self.job_statistics()
        statuses = self.queue_statuses()
        result: dict[str, WMSQueueInfo | Unknown] = {}
        for wmsqueue in queues:
            status = "online"
            if statuses is not None:
                entry = statuses.get(wmsqueue)
                value = entry.get("status") if isinstance(entry, dict) else None
                if not isinstance(value, str) or not value:
                    result[wmsqueue] = Unknown(f"no status for {wmsqueue} in the queue information")
                    continue
                status = value.strip().lower()
            # PanDA lists only sites with active jobs: a good answer without the site means none
            result[wmsqueue] = site_info(data.get(wmsqueue, {}), status)
        return result
