"""Fetching a configuration from a URL: bounded in time and size, with a last good copy on disk.

    fetch(url, deadline, max_bytes, cache_path, check=None, cancel=None) -> Fetched

- **deadline**: seconds for the whole answer, from the first byte sent to the
  last byte read (connecting, the headers and the body together). Each read's
  timeout alone would let a server trickling a byte now and then hold the
  caller for ever: a watchdog thread shuts the connection's socket down at the
  deadline, or as soon as ``cancel`` (a ``threading.Event``, e.g. the factory
  stopping) is set, which ends the read under way.
- **max_bytes**: the answer is read in chunks and counted as it arrives; one
  byte more than ``max_bytes`` (or a ``Content-Length`` saying so) ends it.
- **cache_path**: a good answer (one that ``check`` accepts: it raises
  ValueError for a bad one) is written there (mode 0600, replaced
  atomically); when the URL cannot be fetched, the cached copy is returned
  with ``source = "cache"`` and a ``warning`` saying why and how old it is.
  Without a cached copy, FetchError says why.

Messages never show the URL's secrets (``redact``). Used for remote
``queueConf`` entries and by any other configuration source read over HTTP.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from autopyfactory.redact import redact
from autopyfactory.timefmt import iso
from autopyfactory.tls import AlsoSystemCAs, CAMissing, ca_trust

DEFAULT_DEADLINE = 60.0  # seconds for a whole answer
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # a queues.conf of thousands of queues is a few MB
CHUNK = 64 * 1024
CONNECT_TIMEOUT = 10.0


class FetchError(Exception):
    """The URL could not be fetched and no cached copy could stand in; the message says why."""


@dataclass(frozen=True)
class Fetched:
    text: str
    url: str  # redacted, for messages
    source: str  # "remote": just fetched; "cache": the last good copy, the URL failed
    fetched: float  # epoch seconds the text was fetched (for a cached copy: when it was cached)
    warning: str | None = None  # why the cached copy is used


def cache_file(directory: str, url: str) -> str:
    """Where the last good copy of ``url`` is kept in ``directory`` (the name hides the URL)."""
    return os.path.join(directory, f"remote-{hashlib.sha256(url.encode()).hexdigest()[:32]}.cache")


def fetch(url: str, deadline: float = DEFAULT_DEADLINE, max_bytes: int = DEFAULT_MAX_BYTES,
          cache_path: str | None = None, check: Callable[[str], object] | None = None,
          cancel: threading.Event | None = None) -> Fetched:
    """The text at ``url`` within ``deadline`` seconds and ``max_bytes`` bytes, or its cached copy."""
    shown = redact(url)
    try:
        text = _get(url, time.monotonic() + deadline, max_bytes, cancel, deadline)
        if check is not None:
            check(text)
    except (FetchError, ValueError) as exc:
        why = redact(str(exc))
        if cache_path is None:
            raise FetchError(why) from None
        try:
            with open(cache_path, encoding="utf-8") as handle:
                cached = handle.read()
            when = os.stat(cache_path).st_mtime
        except OSError:
            raise FetchError(f"{why} (and no cached copy yet)") from None
        return Fetched(cached, shown, "cache", when,
                       f"cannot fetch {shown}: {why}; using the last good copy, fetched {iso(when)}")
    if cache_path is not None:
        _write(cache_path, text)
    return Fetched(text, shown, "remote", time.time())


def _get(url: str, end: float, max_bytes: int, cancel: threading.Event | None, deadline: float) -> str:
    sockets: list[socket.socket] = []
    done = threading.Event()
    late = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            if time.monotonic() >= end or (cancel is not None and cancel.is_set()):
                late.set()
                for sock in list(sockets):
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also under TLS
                return

    def why_late() -> str:
        if cancel is not None and cancel.is_set():
            return "cancelled (the factory is stopping)"
        return f"no whole answer within {deadline:g} s (config.remote.timeout)"

    cas = ca_trust()
    try:
        verify = cas.verify(url)
    except CAMissing as exc:
        raise FetchError(str(exc)) from None
    watchdog = threading.Thread(target=watch, name="config-fetch-watchdog", daemon=True)
    watchdog.start()
    try:
        with _session(sockets) as session:
            remaining = max(0.1, end - time.monotonic())
            answer = session.get(url, stream=True, timeout=(min(CONNECT_TIMEOUT, remaining), remaining),
                                 verify=verify)
            with answer:
                if answer.status_code >= 400:
                    raise FetchError(f"HTTP {answer.status_code} {answer.reason}")
                declared = answer.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchError(f"answer of {int(declared)} bytes, larger than {max_bytes} "
                                     f"(config.remote.maxbytes): not read")
                body = bytearray()
                for chunk in answer.iter_content(CHUNK):
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchError(f"answer larger than {max_bytes} bytes (config.remote.maxbytes): "
                                         f"not read further")
                    if late.is_set() or time.monotonic() > end:
                        raise FetchError(why_late())
        if late.is_set():  # the watchdog ended the answer: it is cut short
            raise FetchError(why_late())
    except requests.RequestException as exc:
        if late.is_set():
            raise FetchError(why_late()) from None
        hint = cas.explain(exc)
        raise FetchError(" ".join(str(exc).split()) + (f" ({hint})" if hint else "")) from None
    finally:
        done.set()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FetchError(f"not UTF-8 text (byte {exc.start})") from None


def _session(sockets: list[socket.socket]) -> requests.Session:
    """A session whose every connection puts its socket in ``sockets`` for the watchdog."""

    class Plain(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            sockets.append(self.sock)

    class Secure(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sockets.append(self.sock)

    class PlainPool(HTTPConnectionPool):
        ConnectionCls = Plain

    class SecurePool(HTTPSConnectionPool):
        ConnectionCls = Secure

    adapter = AlsoSystemCAs(max_retries=0)  # the grid's CAs (verify=) and the system's
    adapter.poolmanager.pool_classes_by_scheme = {"http": PlainPool, "https": SecurePool}
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _write(path: str, text: str) -> None:
    """``text`` into ``path`` whole or not at all, readable by the factory's user only."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".remote-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
