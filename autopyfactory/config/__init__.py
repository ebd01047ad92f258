"""Reading and validating factory.conf, queues.conf, auth.conf and monitor.conf.

Everything is validated in one pass before anything runs. A problem is reported
as ``FILE: [SECTION] KEY: what is wrong (expected ..., got ...)``; errors stop
the load (nothing half-applies), warnings (unknown keys) are collected.

- ``autopyfactory.settings``: what a validated config is made of (Key, Section,
  QueueConfig, FactoryConfig, Problem), re-exported here;
- ``tables``: the keys of [Factory] and of a queue section;
- ``reader``: parsing files and the one loop that fills a section from a key table;
- ``validate``: each file against the key tables, given the plugins; placeholders left;
- ``loader``: ``load``, which builds the plugin registry and validates with it.
"""

from autopyfactory.config.loader import load
from autopyfactory.config.tables import (
    FACTORY_KEYS,
    FACTORY_SECTION,
    QUEUE_KEYS,
    STATUS_TIMING_PARAMS,
)
from autopyfactory.config.validate import PLACEHOLDER, placeholders, plugin_key_table
from autopyfactory.settings import (
    MISSING,
    ConfigError,
    FactoryConfig,
    Key,
    Problem,
    QueueConfig,
    Section,
    split_list,
)

__all__ = [
    "FACTORY_KEYS",
    "FACTORY_SECTION",
    "MISSING",
    "PLACEHOLDER",
    "QUEUE_KEYS",
    "STATUS_TIMING_PARAMS",
    "ConfigError",
    "FactoryConfig",
    "Key",
    "Problem",
    "QueueConfig",
    "Section",
    "load",
    "placeholders",
    "plugin_key_table",
    "split_list",
]
