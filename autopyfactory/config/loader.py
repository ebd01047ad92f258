"""``load``: read factory.conf and every file it names, with the plugins they name.

The one place where the configuration meets the plugin system: it reads
[Factory] (whose ``plugindirs`` decides which plugins exist), builds the
plugin registry and hands it to the validation of the other sections.
"""

from __future__ import annotations

import os
import threading

from autopyfactory.config.reader import Reader
from autopyfactory.config.validate import (
    check_references,
    factory_section,
    profile_file,
    queue_files,
    queue_section,
)
from autopyfactory.paths import name_problem
from autopyfactory.plugins.registry import PluginRegistry
from autopyfactory.settings import ConfigError, FactoryConfig, QueueConfig


def load(path: str, cancel: threading.Event | None = None) -> FactoryConfig:
    """Read and validate factory.conf and every file it names, with the plugins it names.

    Raises ConfigError listing every error; returns the config with its warnings
    and, as ``registry``, the plugins it was validated with: the ones to run
    (discovering them again would run every drop-in file a second time).
    ``cancel`` (e.g. the factory stopping) ends a remote fetch under way.
    """
    reader = Reader()
    path = os.path.abspath(path)
    parser = reader.parse_file(path)
    if parser is None:
        raise ConfigError(reader.errors, reader.warnings)
    factory = factory_section(reader, parser, path)
    registry = PluginRegistry.discover(factory.get("plugindirs", []))
    reader.problems.extend(registry.problems)

    sources: dict[str, list] = {}  # queue -> (source, parsed file) of every file defining it
    for source, qparser in queue_files(reader, factory, cancel):
        for name in qparser.sections():
            sources.setdefault(name, []).append((source, qparser))
    queues: dict[str, QueueConfig] = {}
    for name, defined_in in sources.items():
        if name_problem(name):  # a queue name becomes a directory name: a safe set only
            reader.error(defined_in[0][0], name, "", f"queue name {name_problem(name)}")
            continue
        queues[name] = queue_section(reader, registry, defined_in, name)
        if name_problem(queues[name].wmsqueue):
            reader.error(queues[name].source, name, "wmsqueue", name_problem(queues[name].wmsqueue))
    auth = profile_file(reader, registry, factory.get("authConf"), "auth")
    monitor = profile_file(reader, registry, factory.get("monitorConf"), "monitor")
    check_references(reader, queues, auth, monitor)
    if reader.errors:
        raise ConfigError(reader.errors, reader.warnings)
    return FactoryConfig(path, factory, queues, auth, monitor, reader.warnings, registry=registry,
                         stale=reader.stale)
