"""Reading and validating factory.conf, queues.conf, auth.conf and monitor.conf.

Everything is validated in one pass before anything runs. A problem is reported
as ``FILE: [SECTION] KEY: what is wrong (expected ..., got ...)``; errors stop
the load (nothing half-applies), warnings (unknown keys) are collected.

Keys keep their APF 2.4 names. configparser lower-cases key names, so every
lookup here is case-insensitive; ``Key`` tables keep the canonical spelling for
messages.
"""

from __future__ import annotations

import configparser
import difflib
import glob
import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopyfactory.plugins.registry import PluginRegistry

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
    """A configuration that must not be used; ``problems`` lists every error."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


_BOOLEANS = configparser.ConfigParser.BOOLEAN_STATES


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default and allowed range.

    kind is one of str, int, float, bool, list (comma separated), path (relative
    paths are taken from the directory of the file that sets them).
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


# ---------------------------------------------------------------- key tables

FACTORY_SECTION = "Factory"

FACTORY_KEYS: dict[str, Key] = {
    "factoryId": Key("str", required=True, help="name of this factory, unique across the grid"),
    "factoryAdminEmail": Key("str", ""),
    "factoryUser": Key("str", ""),
    "enablequeues": Key("bool", True),
    "queueConf": Key("list", [], help="comma list of queue files or http(s) URLs"),
    "queueDirConf": Key("path", ""),
    "authConf": Key("path", ""),
    "monitorConf": Key("path", ""),
    "baseLogDir": Key("path", "/var/log/apf"),
    "baseLogDirUrl": Key("str", ""),
    "logserver.enabled": Key("bool", False),
    "logserver.port": Key("int", 25880, min=0, max=65535),
    "logserver.bind": Key("str", "127.0.0.1"),
    "logserver.allowrobots": Key("bool", False),
    "cleanlogs.keepdays": Key("int", 14, min=0),
    "cleanlogs.maxdiskpercent": Key("float", 90.0, min=0, max=100),
    "factory.sleep": Key("float", 30.0, min=0.1),
    "maxperfactory.maximum": Key("int", None, min=0),
    "plugindirs": Key("list", ["/etc/apf/plugins.d"]),
    "persistence.dbpath": Key("path", ""),
    "persistence.keepdays": Key("int", 14, min=1),
    "peers.alivecycles": Key("int", 3, min=1),
    "admin.tokenfile": Key("path", ""),
    "admin.allowremote": Key("bool", False, help="admin API also for clients not on the loopback interface"),
    "config.reconfig.interval": Key("int", 0, min=0),
}

# [Factory] wmsstatus.<plugin>.sleep / .maxage / .breakerfailures / .breakercooldown (batchstatus alike)
STATUS_TIMING_PARAMS: dict[str, Key] = {
    "sleep": Key("float", None, min=0.1, help="seconds between two status queries"),
    "maxage": Key("float", None, min=0.1, help="status older than this is unknown"),
    "breakerfailures": Key("int", None, min=1, help="consecutive failures that open the circuit breaker"),
    "breakercooldown": Key("float", None, min=0.1, help="seconds the breaker stays open before a probe"),
}

QUEUE_KEYS: dict[str, Key] = {
    "enabled": Key("bool", True),
    "wmsqueue": Key("str", None, help="name of the queue in the WMS (default: the section name)"),
    "batchqueue": Key("str", None, help="batch-side queue / partition (default: wmsqueue)"),
    "apfqueue.sleep": Key("float", 360.0, min=0.1),
    "apfqueue.maxpercycle": Key("int", 1000, min=0, help="most pilots one cycle submits, whatever the chain says"),
    "apfqueue.faultbackoff": Key("bool", True, help="one probe pilot per cycle while most recent pilots fault"),
    "apfqueue.faultbackoff.pilots": Key("int", 10, min=1, help="how many of the latest ended pilots are judged"),
    "apfqueue.faultbackoff.minimum": Key("int", 3, min=1, help="ended pilots needed before judging"),
    "apfqueue.faultbackoff.fraction": Key("float", 0.5, min=0, max=1,
                                          help="fault backoff when more than this fraction of them faulted"),
    "wmsstatusplugin": Key("str", required=True),
    "batchstatusplugin": Key("str", required=True),
    "batchsubmitplugin": Key("str", required=True),
    "schedplugin": Key("list", ["Ready"]),
    "monitorsection": Key("list", []),
    "executable": Key("path", ""),
    "executable.arguments": Key("str", ""),
    "cleanlogs.keepdays": Key("int", None, min=0),
    "vo": Key("str", ""),
    "cloud": Key("str", ""),
    "grid": Key("str", ""),
}

# which queue key selects which kind of plugin; the kind is also the key prefix
PLUGIN_SELECTORS: dict[str, str] = {
    "wmsstatusplugin": "wmsstatus",
    "batchstatusplugin": "batchstatus",
    "batchsubmitplugin": "batchsubmit",
    "schedplugin": "sched",
}

KIND_TITLES = {
    "sched": "scheduler",
    "wmsstatus": "WMS status",
    "batchstatus": "batch status",
    "batchsubmit": "batch submit",
    "monitor": "monitor",
    "auth": "credentials",
}


def _lower_table(table: dict[str, Key]) -> dict[str, tuple[str, Key]]:
    return {name.lower(): (name, key) for name, key in table.items()}


# ---------------------------------------------------------------- config objects


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
        """Values of keys ``<prefix>.<param>`` as {param: value}."""
        start = prefix.lower() + "."
        return {k[len(start):]: v for k, v in self.values.items() if k.startswith(start)}


class QueueConfig(Section):
    """A queue section of queues.conf with the keys of its plugins resolved."""

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
        prefix = f"{plugin.kind}.{plugin.name.lower()}"
        values = {param.lower(): key.default for param, key in plugin.keys.items() if not param.endswith("*")}
        values.update(self.options(prefix))
        return values


@dataclass
class FactoryConfig:
    """Everything the factory runs from: [Factory], queues, auth and monitor profiles."""

    path: str
    factory: Section
    queues: dict[str, QueueConfig]
    auth: dict[str, Section]
    monitor: dict[str, Section]
    warnings: list[Problem] = field(default_factory=list)
    plugin_problems: list[Problem] = field(default_factory=list)

    def get(self, key: str, default: Any = MISSING) -> Any:
        return self.factory.get(key, default)

    @property
    def factory_id(self) -> str:
        return self.factory.get("factoryId")

    @property
    def enabled_queues(self) -> dict[str, QueueConfig]:
        if not self.factory.get("enablequeues"):
            return {}
        return {name: q for name, q in self.queues.items() if q.enabled}

    def status_timing(self, kind: str, plugin: type) -> tuple[float, float]:
        """(sleep, maxage) of a status plugin: [Factory] keys, else the plugin's defaults."""
        prefix = f"{kind}.{plugin.name.lower()}"
        sleep = self.factory.values.get(f"{prefix}.sleep") or plugin.default_sleep
        maxage = self.factory.values.get(f"{prefix}.maxage") or plugin.default_maxage
        return float(sleep), float(maxage)

    @property
    def spool_default(self) -> str:
        """Default spool directory of the Local WMS: ``spool`` beside baseLogDir."""
        return os.path.join(os.path.dirname(self.factory.get("baseLogDir").rstrip("/")), "spool")

    @property
    def persistence_path(self) -> str:
        path = self.factory.get("persistence.dbpath")
        if path:
            return path
        return os.path.join(os.path.dirname(self.factory.get("baseLogDir").rstrip("/")), "apf.sqlite")


# ---------------------------------------------------------------- reading


class _Reader:
    """Collects problems while reading files."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, file: str, section: str, key: str, message: str) -> None:
        problem = Problem(file, section, key, message)
        if problem not in self.problems:
            self.problems.append(problem)

    def warn(self, file: str, section: str, key: str, message: str) -> None:
        problem = Problem(file, section, key, message, "warning")
        if problem not in self.problems:
            self.problems.append(problem)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def parse_text(self, text: str, source: str) -> configparser.ConfigParser | None:
        parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation())
        try:
            parser.read_string(text, source=source)
        except configparser.DuplicateOptionError as exc:
            self.error(source, exc.section, exc.option, f"set twice in the section (line {exc.lineno})")
            return None
        except configparser.DuplicateSectionError as exc:
            self.error(source, exc.section, "", f"section defined twice (line {exc.lineno})")
            return None
        except configparser.MissingSectionHeaderError as exc:
            self.error(source, "", "", f"cannot parse line {exc.lineno}: {exc.line.strip()!r} "
                       "comes before any [section]")
            return None
        except configparser.ParsingError as exc:
            lines = ", ".join(f"line {n}: {line.strip()!r}" for n, line in exc.errors)
            self.error(source, "", "", f"cannot parse ({lines}; expected key = value)")
            return None
        except configparser.Error as exc:
            self.error(source, "", "", f"cannot parse: {' '.join(str(exc).split())}")
            return None
        return parser

    def parse_file(self, path: str) -> configparser.ConfigParser | None:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            self.error(path, "", "", f"cannot read: {exc.strerror or exc}")
            return None
        return self.parse_text(text, path)

    def parse_url(self, url: str) -> configparser.ConfigParser | None:
        import requests

        try:
            answer = requests.get(url, timeout=30)
            answer.raise_for_status()
        except requests.RequestException as exc:
            self.error(url, "", "", f"cannot fetch: {exc}")
            return None
        return self.parse_text(answer.text, url)

    def items(
        self, parser: configparser.ConfigParser, source: str, section: str
    ) -> dict[str, str]:
        """Interpolated values of a section; a broken interpolation is a problem."""
        values = {}
        for key in parser[section]:
            try:
                values[key] = parser.get(section, key)
            except configparser.Error as exc:
                message = " ".join(str(exc).split())
                self.error(source, section, key, f"bad %(...)s interpolation: {message}")
        return values


def _closest(key: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (closest known key: {match[0]})" if match else ""


def _typed(
    reader: _Reader, source: str, section: str, name: str, key: Key, raw: str, basedir: str
) -> Any:
    try:
        return key.parse(raw, basedir)
    except ValueError as exc:
        reader.error(source, section, name, str(exc))
        return MISSING


def _origin(parser: configparser.ConfigParser, section: str, key: str) -> str:
    """Section a key is written in: the section itself or DEFAULT."""
    own = parser._sections.get(section, {})  # type: ignore[attr-defined]
    return section if key in own else "DEFAULT"


def load(path: str, registry: PluginRegistry | None = None) -> FactoryConfig:
    """Read and validate factory.conf and every file it names.

    Raises ConfigError listing every error; returns the config with warnings.
    """
    from autopyfactory.plugins.registry import PluginRegistry

    reader = _Reader()
    path = os.path.abspath(path)
    parser = reader.parse_file(path)
    if parser is None:
        raise ConfigError(reader.errors)
    factory = _factory_section(reader, parser, path)
    if registry is None:
        registry = PluginRegistry.discover(factory.get("plugindirs", []))
    for problem in registry.problems:
        reader.problems.append(problem)

    queues: dict[str, QueueConfig] = {}
    for source, qparser in _queue_files(reader, factory, path):
        for name in qparser.sections():
            if name in queues:
                reader.error(source, name, "", f"queue defined twice (also in {queues[name].source})")
                continue
            queues[name] = _queue_section(reader, registry, qparser, source, name)

    auth = _profile_file(reader, registry, factory.get("authConf"), "auth", "plugin")
    monitor = _profile_file(reader, registry, factory.get("monitorConf"), "monitor", "monitorplugin")
    for queue in queues.values():
        for section in queue.values.get("monitorsection", []):
            if section not in monitor:
                reader.error(
                    queue.source,
                    queue.name,
                    "monitorsection",
                    f"no section [{section}] in monitorConf "
                    f"(expected one of {', '.join(monitor) or 'none'}, got {section!r})",
                )
        for plugin_kind in ("batchsubmit", "wmsstatus"):
            plugin_name = queue.values.get(f"{plugin_kind}plugin")
            if not plugin_name:
                continue
            profile = queue.values.get(f"{plugin_kind}.{plugin_name.lower()}.proxy")
            if profile and profile not in auth:
                reader.error(
                    queue.source,
                    queue.name,
                    f"{plugin_kind}.{plugin_name.lower()}.proxy",
                    f"no profile [{profile}] in authConf "
                    f"(expected one of {', '.join(auth) or 'none'}, got {profile!r})",
                )

    if reader.errors:
        raise ConfigError(reader.errors)
    return FactoryConfig(path, factory, queues, auth, monitor, reader.warnings)


def _factory_section(reader: _Reader, parser: configparser.ConfigParser, path: str) -> Section:
    basedir = os.path.dirname(path)
    section = Section(FACTORY_SECTION, path)
    if not parser.has_section(FACTORY_SECTION):
        reader.error(path, FACTORY_SECTION, "", "section missing (expected a [Factory] section)")
        raise ConfigError(reader.errors)
    known = _lower_table(FACTORY_KEYS)
    raw = reader.items(parser, path, FACTORY_SECTION)
    section.raw = raw
    for lower, (name, key) in known.items():
        if lower in raw:
            value = _typed(reader, path, FACTORY_SECTION, name, key, raw[lower], basedir)
            if value is not MISSING:
                section.values[lower] = value
        elif key.required:
            reader.error(path, FACTORY_SECTION, name, "required key missing")
        else:
            section.values[lower] = key.default
    for lower, text in list(raw.items()):
        if lower in known:
            continue
        parts = lower.split(".")
        if len(parts) == 3 and parts[0] in ("wmsstatus", "batchstatus") and parts[2] in STATUS_TIMING_PARAMS:
            value = _typed(reader, path, FACTORY_SECTION, lower, STATUS_TIMING_PARAMS[parts[2]], text, basedir)
            if value is not MISSING:
                section.values[lower] = value
            continue
        reader.warn(path, FACTORY_SECTION, lower, "unknown key, ignored" + _closest(lower, known))
    return section


def _queue_files(
    reader: _Reader, factory: Section, factory_path: str
) -> list[tuple[str, configparser.ConfigParser]]:
    basedir = os.path.dirname(factory_path)
    sources: list[str] = []
    for entry in factory.get("queueConf"):
        if entry.startswith(("http://", "https://")):
            sources.append(entry)
        else:
            entry = entry.removeprefix("file://")
            sources.append(os.path.normpath(os.path.join(basedir, os.path.expanduser(entry))))
    directory = factory.get("queueDirConf")
    if directory:
        if os.path.isdir(directory):
            sources.extend(sorted(glob.glob(os.path.join(directory, "*.conf"))))
        else:
            reader.error(factory_path, FACTORY_SECTION, "queueDirConf", f"not a directory (got {directory!r})")
    if not sources:
        reader.error(factory_path, FACTORY_SECTION, "queueConf", "no queue files (expected queueConf or queueDirConf)")
    parsed = []
    for source in sources:
        if source.startswith(("http://", "https://")):
            parser = reader.parse_url(source)
        else:
            parser = reader.parse_file(source)
        if parser is not None:
            parsed.append((source, parser))
    return parsed


def plugin_key_table(registry: PluginRegistry) -> dict[str, tuple[str, Key]]:
    """Every queue-level plugin key, lower-case full name -> (canonical name, Key)."""
    table: dict[str, tuple[str, Key]] = {}
    for kind in PLUGIN_SELECTORS.values():
        for plugin in registry.plugins(kind).values():
            for param, key in plugin.keys.items():
                full = f"{kind}.{plugin.name.lower()}.{param}"
                table[full.lower()] = (full, key)
    return table


def _check_executable(reader: _Reader, source: str, section: str, queue: QueueConfig) -> None:
    """A warning (not an error: a grid worker node may have it) for an executable missing here."""
    executable = queue.values.get("executable")
    if not executable or not queue.values.get("enabled", True):
        return
    found = (os.path.isfile(executable) and os.access(executable, os.X_OK)) if os.sep in executable \
        else shutil.which(executable) is not None
    if not found:
        reader.warn(source, section, "executable",
                    f"{executable!r} is not an executable file on this host: every pilot would fault"
                    " (fine only if it exists where the pilots run)")


def _queue_section(
    reader: _Reader,
    registry: PluginRegistry,
    parser: configparser.ConfigParser,
    source: str,
    name: str,
) -> QueueConfig:
    basedir = "" if "://" in source else os.path.dirname(source)
    queue = QueueConfig(name, source)
    raw = reader.items(parser, source, name)
    queue.raw = raw
    core = _lower_table(QUEUE_KEYS)
    plugin_keys = plugin_key_table(registry)

    def where(key: str) -> str:
        return _origin(parser, name, key)

    for lower, (canonical, key) in core.items():
        if lower in raw:
            value = _typed(reader, source, where(lower), canonical, key, raw[lower], basedir)
            if value is not MISSING:
                queue.values[lower] = value
        elif key.required:
            if queue.values.get("enabled", True):
                reader.error(source, name, canonical, "required key missing")
        else:
            queue.values[lower] = key.default

    _check_executable(reader, source, where("executable"), queue)

    # plugin names must exist; keep the registry's spelling
    for selector, kind in PLUGIN_SELECTORS.items():
        if selector not in queue.values:
            continue
        chosen = queue.values[selector]
        names = chosen if isinstance(chosen, list) else [chosen]
        resolved = []
        for plugin_name in names:
            plugin = registry.find(kind, plugin_name)
            if plugin is None:
                available = ", ".join(sorted(registry.plugins(kind))) or "none"
                reader.error(
                    source,
                    where(selector),
                    selector,
                    f"unknown {KIND_TITLES[kind]} plugin (expected one of {available}, got {plugin_name!r})",
                )
            else:
                resolved.append(plugin.name)
                if queue.values.get("enabled", True):
                    for why in plugin.missing():
                        reader.error(source, where(selector), selector, why)
        queue.values[selector] = resolved if isinstance(chosen, list) else (resolved[0] if resolved else chosen)

    # plugin keys: typed when known, defaults for the plugins this queue uses
    for lower, text in list(raw.items()):
        if lower in core:
            continue
        if lower not in plugin_keys:
            # a key family declared as "<param>.*" (e.g. condor_attributes.<name>)
            for full in plugin_keys:
                if full.endswith(".*") and lower.startswith(full[:-1]) and len(lower) > len(full) - 1:
                    plugin_keys[lower] = (lower, plugin_keys[full][1])
                    break
        if lower in plugin_keys:
            canonical, key = plugin_keys[lower]
            value = _typed(reader, source, where(lower), canonical, key, text, basedir)
            if value is not MISSING:
                queue.values[lower] = value
            continue
        parts = lower.split(".")
        if len(parts) >= 3 and parts[0] in PLUGIN_SELECTORS.values():
            kind, plugin_name = parts[0], parts[1]
            if registry.find(kind, plugin_name) is None:
                available = ", ".join(sorted(registry.plugins(kind))) or "none"
                reader.warn(
                    source, where(lower), lower,
                    f"key of a {KIND_TITLES[kind]} plugin that is not installed, ignored "
                    f"(available: {available})",
                )
                continue
        reader.warn(
            source, where(lower), lower,
            "unknown key, ignored" + _closest(lower, list(core) + list(plugin_keys)),
        )
    for selector, kind in PLUGIN_SELECTORS.items():
        chosen = queue.values.get(selector)
        for plugin_name in chosen if isinstance(chosen, list) else [chosen]:
            plugin = registry.find(kind, plugin_name) if plugin_name else None
            if plugin is None:
                continue
            for param, key in plugin.keys.items():
                full = f"{kind}.{plugin.name.lower()}.{param}".lower()
                if param.endswith("*"):
                    continue
                if full not in queue.values and full not in raw:
                    if key.required and queue.values.get("enabled", True):
                        reader.error(source, name, full, f"required by the {plugin.name} plugin, missing")
                    queue.values[full] = key.default
    return queue


def _profile_file(
    reader: _Reader, registry: PluginRegistry, path: str, kind: str, selector: str
) -> dict[str, Section]:
    """auth.conf / monitor.conf: one section per profile, ``selector`` names its plugin."""
    if not path:
        return {}
    parser = reader.parse_file(path)
    if parser is None:
        return {}
    basedir = os.path.dirname(path)
    profiles: dict[str, Section] = {}
    for name in parser.sections():
        section = Section(name, path)
        raw = reader.items(parser, path, name)
        section.raw = raw
        profiles[name] = section
        plugin_name = raw.get(selector)
        if not plugin_name:
            reader.error(path, name, selector, f"required key missing (expected a {KIND_TITLES[kind]} plugin name)")
            continue
        plugin = registry.find(kind, plugin_name)
        if plugin is None:
            available = ", ".join(sorted(registry.plugins(kind))) or "none"
            reader.error(path, name, selector, f"unknown {KIND_TITLES[kind]} plugin (expected one of {available}, got {plugin_name!r})")
            continue
        section.values[selector] = plugin.name
        prefix = plugin.key_prefix()
        table = {f"{prefix}{param}".lower(): (f"{prefix}{param}", key) for param, key in plugin.keys.items()}
        for lower, (canonical, key) in table.items():
            if lower in raw:
                value = _typed(reader, path, name, canonical, key, raw[lower], basedir)
                if value is not MISSING:
                    section.values[lower] = value
            elif key.required:
                reader.error(path, name, canonical, f"required by the {plugin.name} plugin, missing")
            else:
                section.values[lower] = key.default
        for lower in raw:
            if lower != selector and lower not in table:
                reader.warn(path, _origin(parser, name, lower), lower, "unknown key, ignored" + _closest(lower, table))
    return profiles


PLACEHOLDER = "CHANGEME"


def placeholders(config: FactoryConfig) -> list[Problem]:
    """Values still holding the shipped placeholder: the factory must not run with them."""
    sections = [config.factory, *config.queues.values(), *config.auth.values(), *config.monitor.values()]
    names = {key.lower(): key for key in (*FACTORY_KEYS, *QUEUE_KEYS)}
    return [Problem(section.source, section.name, names.get(key, key),
                    f"still the placeholder {value!r}: set it for this site")
            for section in sections for key, value in section.raw.items() if PLACEHOLDER in value.upper()]
