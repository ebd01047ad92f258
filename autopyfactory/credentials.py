"""Credential service: checks every auth.conf profile on its own schedule.

Queues ask ``status(profile)`` before submitting; a profile that is expired,
failing or not yet checked makes its queues submit nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from autopyfactory.context import FactoryContext
from autopyfactory.info import CredentialStatus
from autopyfactory.interfaces import AuthPlugin

log = logging.getLogger(__name__)


class CredentialService:
    def __init__(self, context: FactoryContext):
        self.context = context
        self.profiles: dict[str, AuthPlugin] = {}
        self._status: dict[str, CredentialStatus] = {}
        self._next: dict[str, float] = {}
        # called after every check with its result (e.g. the persistence store)
        self.listeners: list[Callable[[CredentialStatus], None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="credentials", daemon=True)
        for name, section in context.config.auth.items():
            plugin_cls = context.registry.get("auth", section.get("plugin"))
            self.profiles[name] = plugin_cls(section, context)

    def check(self, name: str) -> CredentialStatus:
        plugin = self.profiles[name]
        try:
            state = plugin.check()
        except Exception as exc:
            state = CredentialStatus(name, False, None, f"check failed: {type(exc).__name__}: {exc}")
        if not state.ok:
            log.warning("credential %s: %s", name, state.message)
        self._status[name] = state
        self._next[name] = time.time() + plugin.check_interval
        for listener in self.listeners:
            try:
                listener(state)
            except Exception:
                log.exception("credential %s: check listener failed", name)
        return state

    def check_all(self) -> None:
        for name in self.profiles:
            self.check(name)

    def status(self, name: str) -> CredentialStatus | None:
        state = self._status.get(name)
        if state is not None and state.ok and state.seconds_left is not None:
            # time passes between checks: an expired credential is not ok
            left = state.seconds_left - (time.time() - (self._next[name] - self.profiles[name].check_interval))
            if left <= 0:
                return CredentialStatus(name, False, 0, "expired")
        return state

    def all_status(self) -> dict[str, CredentialStatus | None]:
        return {name: self.status(name) for name in self.profiles}

    def start(self) -> None:
        if self.profiles:
            self.check_all()
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            now = time.time()
            for name in self.profiles:
                if now >= self._next.get(name, 0):
                    self.check(name)
