"""Services the factory hands to plugins explicitly (no singletons)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autopyfactory.config import FactoryConfig, QueueConfig

if TYPE_CHECKING:
    from autopyfactory.credentials import CredentialService
    from autopyfactory.plugins.registry import PluginRegistry


class FactoryContext:
    """What every plugin may use: the config, shared objects, log locations."""

    def __init__(self, config: FactoryConfig):
        self.config = config
        self.credentials: CredentialService | None = None
        self.store: Any = None  # persistence store, when enabled
        self._shared: dict[Any, Any] = {}
        self._lock = threading.Lock()

    @property
    def registry(self) -> PluginRegistry:
        """The plugins the config was validated with."""
        return self.config.registry

    @property
    def factory_id(self) -> str:
        return self.config.factory_id

    def shared(self, key: Any, make: Callable[[], Any]) -> Any:
        """One object per key for the whole factory (e.g. a client per endpoint)."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = make()
            return self._shared[key]

    def close(self) -> None:
        with self._lock:
            shared, self._shared = list(self._shared.values()), {}
        for obj in shared:
            close = getattr(obj, "close", None)
            if callable(close):
                close()

    def logdir(self, queue: str, when: float | None = None) -> str:
        """``<baseLogDir>/<YYYY-MM-DD>/<queue>/``, created if missing."""
        day = time.strftime("%Y-%m-%d", time.gmtime(when or time.time()))
        path = os.path.join(self.config.get("baseLogDir"), day, queue)
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
