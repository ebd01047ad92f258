"""Services the factory hands to plugins explicitly (no singletons)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from autopyfactory.info import CredentialStatus
from autopyfactory.paths import confined
from autopyfactory.settings import FactoryConfig, QueueConfig

# The context names what it holds by what it is used for (protocols), not by the
# classes that hold it: those classes are made with a context, so importing them
# here would tie the modules in a cycle.


class Plugins(Protocol):
    """The plugin registry (``plugins.registry.PluginRegistry``)."""

    def get(self, kind: str, name: str) -> type: ...


class Credentials(Protocol):
    """The credential service (``credentials.CredentialService``)."""

    def status(self, name: str) -> CredentialStatus | None: ...

    def credential_type(self, name: str) -> str: ...


class FactoryContext:
    """What every plugin may use: the config, shared objects, log locations."""

    def __init__(self, config: FactoryConfig):
        self.config = config
        self.credentials: Credentials | None = None  # set by the factory once it has made them
        self.store: Any = None  # persistence store (``persistence.Store``), set by the factory when enabled
        self._shared: dict[Any, Any] = {}
        self._lock = threading.Lock()

    @property
    def registry(self) -> Plugins:
        """The plugins the config was validated with."""
        return self.config.registry

    @property
    def factory_id(self) -> str:
        return self.config.factory_id

    def credential(self, profile: str) -> CredentialStatus | None:
        """The last check of an auth.conf profile; None when unknown (not checked, no such profile)."""
        if not profile or self.credentials is None:
            return None
        return self.credentials.status(profile)

    def wms_environment(self, queue: QueueConfig) -> dict[str, str]:
        """What the queue's WMS status plugin wants in every pilot's environment (see ``pilot_environment``)."""
        plugin = self.registry.get("wmsstatus", queue.values["wmsstatusplugin"])
        return plugin.pilot_environment(queue.plugin_options(plugin), self.config)

    def shared(self, key: Any, make: Callable[[], Any]) -> Any:
        """One object per key for the whole factory (e.g. a client per endpoint)."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = make()
            return self._shared[key]

    def existing(self, key: Any) -> Any:
        """The shared object of ``key`` if one was made, else None."""
        with self._lock:
            return self._shared.get(key)

    def close(self) -> None:
        with self._lock:
            shared, self._shared = list(self._shared.values()), {}
        for obj in shared:
            close = getattr(obj, "close", None)
            if callable(close):
                close()

    def logdir(self, queue: str, when: float | None = None, create: bool = True) -> str:
        """``<baseLogDir>/<YYYY-MM-DD>/<queue>/``, created if missing; PathEscape if it would leave baseLogDir."""
        day = time.strftime("%Y-%m-%d", time.gmtime(when or time.time()))
        path = confined(self.config.get("baseLogDir"), day, queue)
        if create:
            os.makedirs(path, exist_ok=True)
        return path

    def logurl(self, path: str) -> str:
        """URL of a file under baseLogDir (``baseLogDirUrl`` + its relative path)."""
        base = self.config.get("baseLogDirUrl")
        relative = os.path.relpath(path, self.config.get("baseLogDir"))
        if not base:
            return "file://" + os.path.abspath(path)
        return base.rstrip("/") + "/" + relative.replace(os.sep, "/")

    def pilot_environment(self, queue: QueueConfig, cid: str, outfile: str) -> dict[str, str]:
        """Environment handed to every pilot (APF 2.4 names)."""
        fid = self.factory_id
        monitor = ""
        for section in queue.values.get("monitorsection", []):
            url = self.config.monitor.get(section)
            if url is not None:
                monitor = url.get("monitorurl", "") or monitor
        return {
            "PANDA_JSID": fid,
            "APFFID": fid,
            "APFCID": cid,
            "GTAG": self.logurl(outfile),
            "APFMON": monitor,
            "FACTORYQUEUE": queue.name,
            "FACTORYUSER": self.config.get("factoryUser") or os.environ.get("USER", ""),
        }
