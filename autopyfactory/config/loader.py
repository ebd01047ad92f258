"""``load``: read factory.conf and every file it names, with the plugins they name.

The one place where the configuration meets the plugin system: it reads
[Factory] (whose ``plugindirs`` decides which plugins exist), builds the
plugin registry and hands it to the validation of the other sections.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace

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
from autopyfactory.settings import ConfigError, FactoryConfig, Problem, QueueConfig


def load(path: str, partial: bool = False, cancel: threading.Event | None = None) -> FactoryConfig:
    """Read and validate factory.conf and every file it names, with the plugins it names.

    Raises ConfigError listing every error; returns the config with its warnings
    and, as ``registry``, the plugins it was validated with: the ones to run
    (discovering them again would run every drop-in file a second time).

    With ``partial`` (the daemon, a reload), errors in a queue's section make
    only that queue invalid: it is left out of ``enabled_queues`` and listed in
    ``invalid`` with its errors; only errors outside every queue section
    ([Factory], auth.conf, monitor.conf, a file that cannot be parsed) raise.
    An error in a [DEFAULT] value is reported on each queue that inherits it,
    with the file and line where it is set.
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
    auth = profile_file(reader, registry, factory.get("authConf"), "auth")
    monitor = profile_file(reader, registry, factory.get("monitorConf"), "monitor")
    queues: dict[str, QueueConfig] = {}
    invalid: dict[str, list[Problem]] = {}
    for name, defined_in in sources.items():
        start = len(reader.problems)
        if name_problem(name):  # a queue name becomes a directory name: a safe set only
            reader.error(defined_in[0][0], name, "", f"queue name {name_problem(name)}")
            invalid[name] = reader.problems[start:]
            continue
        queue = queues[name] = queue_section(reader, registry, defined_in, name)
        if name_problem(queue.wmsqueue):
            reader.error(queue.source, name, "wmsqueue", name_problem(queue.wmsqueue))
        check_references(reader, {name: queue}, auth, monitor)
        errors = own_errors(reader, start, queue)
        if errors:
            invalid[name] = errors
    queue_errors = [problem for errors in invalid.values() for problem in errors]
    if reader.errors and (not partial or len(reader.errors) > len(queue_errors)):
        raise ConfigError(reader.errors, reader.warnings)
    return FactoryConfig(path, factory, queues, auth, monitor, reader.warnings, registry=registry,
                         invalid=invalid, stale=reader.stale)


def own_errors(reader: Reader, start: int, queue: QueueConfig) -> list[Problem]:
    """The errors found since ``start`` (while reading ``queue``), each named by the queue:
    one in a value the queue inherits from [DEFAULT] says so, with the file and line."""
    errors = []
    for index in range(start, len(reader.problems)):
        problem = reader.problems[index]
        if problem.severity != "error":
            continue
        key = problem.key.lower()
        if problem.section == "DEFAULT" or (problem.section == queue.name and key in queue.inherited):
            file = queue.inherited.get(key, queue.source)
            line = reader.line(file, "DEFAULT", key)
            at = f"{file} line {line}" if line else file
            problem = replace(problem, section=queue.name,
                              message=f"{problem.message} (inherited from [DEFAULT], set at {at})")
            reader.problems[index] = problem
        errors.append(problem)
    return errors
