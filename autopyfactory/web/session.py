"""Signing in on the pages: the admin token once, then a session cookie and a CSRF token on every form.

An operator signs in at ``/signin`` with the token of ``admin.tokenfile``
(the same one the API's bearer header carries). The factory then keeps a
session in memory and sets the cookie ``apf_session``: ``HttpOnly`` (no
script reads it), ``SameSite=Strict`` (no other site's page sends it),
``Path=/``, ``Max-Age`` of ``admin.sessiontimeout``, and ``Secure`` when the
request came over TLS (``X-Forwarded-Proto: https`` from the reverse proxy
named in ``logserver.trustedproxy``). Each session has its own CSRF token: every form of the pages
carries it, and a POST made with the cookie but without it (or with another)
is refused. A request whose ``Origin`` names another host is refused as well.
A session ends at sign-out, at its expiry, at a restart, and as soon as the
token file changes (a rotated token signs everybody out).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

COOKIE = "apf_session"
MAX_SESSIONS = 100  # the oldest ends first when more sign in


@dataclass
class Session:
    sid: str
    csrf: str
    expires: float
    token_digest: str  # of the token it signed in with: another token in the file ends it


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def over_tls(environ: dict) -> bool:
    """The browser reached us over TLS: the scheme, set from a trusted proxy's X-Forwarded-Proto by the server
    (``logserver.trustedproxy``); any other client's X-Forwarded-* never reaches here."""
    return environ.get("wsgi.url_scheme") == "https"


def cross_origin(environ: dict) -> bool:
    """The request says it comes from a page of another host (``Origin``)."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin or origin == "null":
        return bool(origin)
    return urlsplit(origin).netloc.lower() != (environ.get("HTTP_HOST") or "").lower()


class Sessions:
    """The signed-in sessions of one web server."""

    def __init__(self, lifetime: float):
        self.lifetime = lifetime
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, token: str) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time() + self.lifetime,
                          digest(token))
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[min(self._sessions, key=lambda s: self._sessions[s].expires)]
            self._sessions[session.sid] = session
        return session

    def find(self, environ: dict, token: str | None) -> Session | None:
        """The live session of the request's cookie, signed in with ``token`` (the one in force); else None."""
        try:
            cookie = SimpleCookie(environ.get("HTTP_COOKIE") or "")
        except CookieError:
            return None
        morsel = cookie.get(COOKIE)
        if morsel is None:
            return None
        with self._lock:
            session = self._sessions.get(morsel.value)
            if session is None:
                return None
            if session.expires < time.time() or token is None or \
                    not hmac.compare_digest(session.token_digest, digest(token)):
                del self._sessions[session.sid]
                return None
            return session

    def end(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.sid, None)

    def cookie(self, session: Session | None, environ: dict) -> tuple[str, str]:
        """The Set-Cookie header that starts ``session`` (None: that ends the one the browser has)."""
        value, age = (session.sid, int(self.lifetime)) if session is not None else ("", 0)
        secure = "; Secure" if over_tls(environ) else ""
        return "Set-Cookie", f"{COOKIE}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict{secure}"

    @staticmethod
    def csrf_ok(session: Session, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(session.csrf.encode(), str(offered).encode())
