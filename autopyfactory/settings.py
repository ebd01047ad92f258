"""What a validated configuration is made of: keys, sections, problems.

``Key`` describes one configuration key (type, default, range) and parses its
text; ``Section``, ``QueueConfig`` and ``FactoryConfig`` hold the typed values
``autopyfactory.config.load`` produced; ``Problem`` is one thing wrong with a
file. This module depends on nothing else of the package, so the plugin
contract (``interfaces``) and the plugin registry can use it while the
config loader uses them.
"""

from __future__ import annotations

import configparser
import math
import os
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MISSING = object()


@dataclass(frozen=True)
class Problem:
    file: str
    section: str
    key: str
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"[{self.section}] " if self.section else ""
        key = f"{self.key}: " if self.key else ""
        return f"{self.file}: {where}{key}{self.message}"


class ConfigError(Exception):
    """A configuration that must not be used; ``problems`` lists every error, ``warnings``
    what else was found (printed beside the errors)."""

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None):
        self.problems = problems
        self.warnings = list(warnings or [])
        super().__init__("\n".join(str(p) for p in problems))


_BOOLEANS = configparser.ConfigParser.BOOLEAN_STATES


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default and allowed range.

    kind is one of str, int, float, bool, list (comma separated), path (relative
    paths are taken from the directory of the file that sets them), argv (a
    command line split into words, run without a shell), url (http or https).
    """

    kind: str = "str"
    default: Any = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    required: bool = False

    def parse(self, raw: str, basedir: str = "") -> Any:
        """Typed value of ``raw``; ValueError says ``expected ..., got ...``."""
        text = raw.strip()
        if self.kind == "int":
            try:
                value: Any = int(text)
            except ValueError:
                raise ValueError(f"not an integer (expected an integer, got {raw!r})") from None
        elif self.kind == "float":
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"not a number (expected a number, got {raw!r})") from None
            if not math.isfinite(value):
                raise ValueError(f"not a finite number (expected a number, got {raw!r})")
        elif self.kind == "bool":
            if text.lower() not in _BOOLEANS:
                raise ValueError(f"not a boolean (expected true or false, got {raw!r})")
            return _BOOLEANS[text.lower()]
        elif self.kind == "list":
            return split_list(text)
        elif self.kind == "argv":  # a command line, split as a shell would split it, never run by one
            try:
                return shlex.split(text)
            except ValueError as exc:
                raise ValueError(f"not a command line ({exc}; expected words and quotes, got {raw!r})") from None
        elif self.kind == "url":
            parts = urlsplit(text)
            if text and (parts.scheme not in ("http", "https") or not parts.hostname):
                raise ValueError(f"not an http(s) URL (expected https://host/path, got {raw!r})")
            return text
        elif self.kind == "path":
            if not text:
                return ""
            path = os.path.expanduser(text)
            if basedir and not os.path.isabs(path) and "://" not in path:
                path = os.path.normpath(os.path.join(basedir, path))
            return path
        else:
            value = text
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"not allowed (expected one of {', '.join(self.choices)}, got {raw!r})")
        if self.min is not None and value < self.min:
            raise ValueError(f"too small (expected at least {self.min:g}, got {raw!r})")
        if self.max is not None and value > self.max:
            raise ValueError(f"too large (expected at most {self.max:g}, got {raw!r})")
        return value


def split_list(text: str) -> list[str]:
    """APF comma list: ``a, b,c`` -> [a, b, c]; ``\\,`` keeps a literal comma."""
    items, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            items.append(current.strip())
            current = ""
        else:
            current += ch
    items.append(current.strip())
    return [item for item in items if item]


@dataclass
class Section:
    """One validated section: typed values (lower-case keys) and where they came from."""

    name: str
    source: str
    values: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: Any = MISSING) -> Any:
        value = self.values.get(key.lower(), MISSING)
        if value is MISSING:
            if default is MISSING:
                raise KeyError(f"{self.source}: [{self.name}] {key} is not set")
            return default
        return value

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def options(self, prefix: str) -> dict[str, Any]:
        """Values of keys ``<prefix>.<param>`` as {param: value} (``prefix`` with or without its dot)."""
        start = prefix.lower() if not prefix or prefix.endswith(".") else prefix.lower() + "."
        return {k[len(start):]: v for k, v in self.values.items() if k.startswith(start)}


@dataclass
class QueueConfig(Section):
    """A queue section of queues.conf with the keys of its plugins resolved."""

    inherited: dict[str, str] = field(default_factory=dict)  # key written in [DEFAULT] -> the file it is in

    @property
    def wmsqueue(self) -> str:
        return self.values.get("wmsqueue") or self.name

    @property
    def batchqueue(self) -> str:
        return self.values.get("batchqueue") or self.wmsqueue

    @property
    def enabled(self) -> bool:
        return bool(self.values.get("enabled", True))

    def plugin_options(self, plugin: type) -> dict[str, Any]:
        """{param: value} for ``<kind>.<plugin name>.<param>``, defaults filled in."""
        values = plugin.defaults()
        values.update(self.options(plugin.key_prefix()))
        return values


def persistence_path(factory: Section) -> str:
    """The persistence store: ``persistence.dbpath``, default ``apf.sqlite`` beside baseLogDir."""
    path = factory.get("persistence.dbpath")
    if path:
        return path
    return os.path.join(os.path.dirname(factory.get("baseLogDir").rstrip("/")), "apf.sqlite")


def remote_cache_dir(factory: Section) -> str:
    """Where the last good copies of remote configuration are kept: ``config.remote.cachedir``,
    default the persistence store's directory."""
    return factory.get("config.remote.cachedir", "") or os.path.dirname(os.path.abspath(persistence_path(factory)))


@dataclass
class FactoryConfig:
    """Everything the factory runs from: [Factory], queues, auth and monitor profiles."""

    path: str
    factory: Section
    queues: dict[str, QueueConfig]
    auth: dict[str, Section]
    monitor: dict[str, Section]
    warnings: list[Problem] = field(default_factory=list)
    # the plugin registry this config was validated with (set by load): the one to run with
    registry: Any = None
    # queues whose section has errors -> those errors: not started, shown critical (load(partial=True))
    invalid: dict[str, list[Problem]] = field(default_factory=dict)
    # remote sources read from their last good copy, the URL failing: why (a factory problem while it lasts)
    stale: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = MISSING) -> Any:
        return self.factory.get(key, default)

    @property
    def factory_id(self) -> str:
        return self.factory.get("factoryId")

    @property
    def enabled_queues(self) -> dict[str, QueueConfig]:
        if not self.factory.get("enablequeues"):
            return {}
        return {name: q for name, q in self.queues.items() if q.enabled and name not in self.invalid}

    def invalid_reason(self, name: str, outcome: str = "not started") -> str | None:
        """One line saying what is wrong with queue ``name``'s section, or None when nothing is."""
        problems = self.invalid.get(name)
        if not problems:
            return None
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        first = problems[0]
        key = f"{first.key}: " if first.key else ""
        return f"{outcome}: {key}{first.message}{more}"

    def status_timing(self, kind: str, plugin: type) -> tuple[float, float]:
        """(sleep, maxage) of a status plugin: [Factory] keys, else the plugin's defaults."""
        prefix = plugin.key_prefix()
        sleep = self.factory.values.get(f"{prefix}sleep") or plugin.default_sleep
        maxage = self.factory.values.get(f"{prefix}maxage") or plugin.default_maxage
        return float(sleep), float(maxage)

    @property
    def spool_default(self) -> str:
        """Default spool directory of the Local WMS: ``spool`` beside baseLogDir."""
        return os.path.join(os.path.dirname(self.factory.get("baseLogDir").rstrip("/")), "spool")

    @property
    def persistence_path(self) -> str:
        return persistence_path(self.factory)
