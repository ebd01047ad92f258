"""What the web server, the metrics and the services see of the factory.

They depend on this read-only view, not on ``Factory`` itself: the factory
builds them, so they must not import it (no import cycle, not even a
typing-only one). The one action in it is ``reload()``, which the admin API
asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from autopyfactory.config import FactoryConfig, Problem
    from autopyfactory.credentials import CredentialService
    from autopyfactory.queue import APFQueue
    from autopyfactory.status import StatusService


class FactoryView(Protocol):
    @property
    def config(self) -> FactoryConfig: ...  # the configuration in force (changes on reload)

    @property
    def version(self) -> str: ...

    @property
    def started(self) -> float: ...  # epoch seconds

    @property
    def queues(self) -> Mapping[str, APFQueue]: ...

    @property
    def credentials(self) -> CredentialService: ...

    @property
    def status(self) -> StatusService: ...

    @property
    def last_reload(self) -> dict | None: ...  # outcome of the last reload

    @property
    def store(self) -> Any: ...  # persistence.Store, or None without one

    def summary(self) -> dict: ...

    def thread_dump(self) -> str: ...  # every thread's stack (the admin API's threads)

    def debug_info(self) -> dict: ...  # versions, config sources, endpoints, store (the admin API's debug)

    def request_stop(self) -> None: ...  # a graceful stop, as SIGTERM (the admin API's stop)

    def reload(self) -> list[Problem]: ...  # [] when the configuration was applied
