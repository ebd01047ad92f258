"""Credential service: checks every auth.conf profile on its own schedule.

Queues ask ``status(profile)`` before submitting; a profile that is expired,
failing or not yet checked makes its queues submit nothing. The profiles'
plugins (``plugins/auth``: X509, Token, SSH) renew what they can, running
their commands through ``commands.run``; the helpers here write credential
files (0600, replaced atomically).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable

from autopyfactory.config import Section
from autopyfactory.context import FactoryContext
from autopyfactory.info import CredentialStatus
from autopyfactory.interfaces import AuthPlugin

log = logging.getLogger(__name__)

# How a pilot finds its credential, per credential type (docs/operations.md).
# SSH keys log the factory in to a remote site and never reach pilots.
PILOT_VARIABLES = {"x509": "X509_USER_PROXY", "token": "BEARER_TOKEN_FILE"}


# ---------------------------------------------------------------- helpers for auth plugins


def write_private(path: str, data: bytes | str) -> None:
    """Write a credential file readable by its owner only, replacing the old one atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".apf-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def private_tempfile(near: str) -> str:
    """An empty 0600 file in the directory of ``near`` (renewal output before validation)."""
    fd, tmp = tempfile.mkstemp(prefix=".apf-new-", dir=os.path.dirname(os.path.abspath(near)))
    os.fchmod(fd, 0o600)
    os.close(fd)
    return tmp


# ---------------------------------------------------------------- the service


class CredentialService:
    def __init__(self, context: FactoryContext):
        self.context = context
        self.profiles: dict[str, AuthPlugin] = {}
        self._status: dict[str, CredentialStatus] = {}
        self._checked: dict[str, float] = {}
        self._next: dict[str, float] = {}
        self._lock = threading.RLock()
        # called after every check with its result (e.g. the persistence store)
        self.listeners: list[Callable[[CredentialStatus], None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="credentials", daemon=True)
        for name, section in context.config.auth.items():
            self.profiles[name] = self._make(section)

    def _make(self, section: Section) -> AuthPlugin:
        plugin_cls = self.context.registry.get("auth", section.get("plugin"))
        return plugin_cls(section, self.context)

    def check(self, name: str) -> CredentialStatus:
        with self._lock:
            plugin = self.profiles[name]
        started = time.time()
        try:
            state = plugin.check()
        except Exception as exc:
            log.exception("credential %s: check failed", name)
            state = CredentialStatus(name, False, None, f"check failed: {type(exc).__name__}: {exc}")
        if not state.ok:
            log.warning("credential %s: %s", name, state.message)
        else:
            left = "no expiry" if state.seconds_left is None else f"{state.seconds_left:.0f}s left"
            log.info("credential %s: ok, %s%s", name, left, f" ({state.message})" if state.message else "")
        with self._lock:
            if self.profiles.get(name) is plugin:  # not replaced by a reload meanwhile
                self._status[name] = state
                self._checked[name] = started
                self._next[name] = time.time() + plugin.check_interval
        for listener in self.listeners:
            try:
                listener(state)
            except Exception:
                log.exception("credential %s: check listener failed", name)
        return state

    def check_all(self) -> None:
        for name in list(self.profiles):
            self.check(name)

    def status(self, name: str) -> CredentialStatus | None:
        """Last check, with the time left counted down since; None if never checked."""
        with self._lock:
            state = self._status.get(name)
            checked = self._checked.get(name)
        if state is None or state.seconds_left is None or checked is None:
            return state
        left = state.seconds_left - (time.time() - checked)
        if left <= 0:
            return CredentialStatus(name, False, 0, "expired" + (f" ({state.message})" if state.message else ""),
                                    state.path)
        return CredentialStatus(name, state.ok, left, state.message, state.path)

    def credential_type(self, name: str) -> str:
        """What profile ``name`` holds ("x509", "token", "ssh"); ValueError for a plugin that does not say."""
        with self._lock:
            plugin = self.profiles[name]
        if type(plugin).credential_type not in (*PILOT_VARIABLES, "ssh"):
            raise ValueError(f"credential profile {name}: plugin {plugin.name} sets no credential_type "
                             f"(x509, token or ssh)")
        return type(plugin).credential_type

    def all_status(self) -> dict[str, CredentialStatus | None]:
        """Every profile's status (for the status page and apf_credential_seconds_left)."""
        return {name: self.status(name) for name in list(self.profiles)}

    def reconfigure(self, auth: dict[str, Section]) -> None:
        """Profiles of a reloaded auth.conf: new or changed ones are checked now, removed ones dropped."""
        fresh = []
        with self._lock:
            for name in list(self.profiles):
                if name not in auth:
                    del self.profiles[name]
                    for table in (self._status, self._checked, self._next):
                        table.pop(name, None)
            for name, section in auth.items():
                current = self.profiles.get(name)
                if current is not None and current.section.raw == section.raw:
                    continue
                self.profiles[name] = self._make(section)
                for table in (self._status, self._checked, self._next):
                    table.pop(name, None)
                fresh.append(name)
        for name in fresh:
            self.check(name)
        if self.profiles and not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def start(self) -> None:
        if self.profiles:
            self.check_all()
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            now = time.time()
            with self._lock:
                due = [name for name in self.profiles if now >= self._next.get(name, 0)]
            for name in due:
                if self._stop.is_set():
                    return
                self.check(name)
