"""Validating each file against the key tables of the factory, the queues and the plugins.

The plugins are given (a registry built beforehand): this module reads what
they declare and never builds the plugin system itself.
"""

from __future__ import annotations

import configparser
import functools
import glob
import os
import re
import shlex
import shutil
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import autopyfactory.config.apf24 as apf24
import autopyfactory.config.cric as cric
import autopyfactory.config.remote as remote
from autopyfactory.config.reader import (
    Fetching,
    KeyTable,
    Reader,
    closest,
    did_you_mean,
    lower_table,
    origin,
)
from autopyfactory.config.tables import (
    FACTORY_KEYS,
    FACTORY_SECTION,
    QUEUE_KEYS,
    STATUS_TIMING_PARAMS,
)
from autopyfactory.interfaces import KINDS, QUEUE_KINDS, key_prefix
from autopyfactory.paths import WRAPPERS, system_directory
from autopyfactory.redact import redact
from autopyfactory.settings import (
    MISSING,
    ConfigError,
    FactoryConfig,
    Problem,
    QueueConfig,
    Section,
    remote_cache_dir,
    split_list,
)

if TYPE_CHECKING:
    from autopyfactory.plugins.registry import PluginRegistry

QUEUE_TABLE = lower_table(QUEUE_KEYS)


# ---------------------------------------------------------------- factory.conf


def factory_section(reader: Reader, parser: configparser.ConfigParser, path: str) -> Section:
    """[Factory]: its keys, and ``<wmsstatus|batchstatus>.<plugin>.<timing>`` keys."""
    if not parser.has_section(FACTORY_SECTION):
        reader.error(path, FACTORY_SECTION, "", "section missing (expected a [Factory] section)")
        raise ConfigError(reader.errors, reader.warnings)
    basedir = os.path.dirname(path)
    section = Section(FACTORY_SECTION, path)
    section.raw = apf24.drop_none(reader.items(parser, path, FACTORY_SECTION))
    for old_key, new_key in apf24.rename_keys(section.raw, apf24.RENAMED_FACTORY_KEYS):
        reader.warn(path, FACTORY_SECTION, old_key, f"APF 2.4 key, read as {new_key}")
    reconfig = apf24.reconfig(section.raw)
    if reconfig:
        reader.warn(path, FACTORY_SECTION, "config.reconfig", reconfig)
    agis = apf24.queues_plugin(section.raw)
    if agis:
        reader.warn(path, FACTORY_SECTION, "config.queues.plugin", agis)
    known = lower_table(FACTORY_KEYS)
    reader.fill(section, known, basedir)
    for lower, text in section.raw.items():
        if lower in known:
            continue
        parts = lower.split(".")
        if len(parts) == 3 and parts[0] in ("wmsstatus", "batchstatus") and parts[2] in STATUS_TIMING_PARAMS:
            value = reader.typed(path, FACTORY_SECTION, lower, STATUS_TIMING_PARAMS[parts[2]], text, basedir)
            if value is not MISSING:
                section.values[lower] = value
            continue
        old = apf24.ignored(lower, apf24.IGNORED_FACTORY_KEYS)
        if old is not None:
            reader.warn_once(path, FACTORY_SECTION, old[0], f"APF 2.4 key, ignored: {old[1]}")
            continue
        reader.warn(path, FACTORY_SECTION, lower, "unknown key, ignored" + closest(lower, known))
    system = system_directory(section.values.get("baselogdir") or "/")
    if system:
        reader.error(path, FACTORY_SECTION, "baseLogDir", f"a system directory ({system}): the web server "
                     f"would serve it and the cleaner would delete in it (expected a directory of the factory's "
                     f"own, e.g. /var/log/apf, got {section.values.get('baselogdir')!r})")
    _check_log_url(reader, path, section)
    return section


def _check_log_url(reader: Reader, path: str, section: Section) -> None:
    """Warn when the links made from ``baseLogDirUrl`` miss what this factory's web server serves.

    It serves pilot logs under ``/logs/`` on ``logserver.port``. APF 2.4's log
    server served baseLogDir at ``/`` on the port of baseLogDirUrl, so an APF 2.4
    ``baseLogDirUrl = http://host:25880`` makes links the server has to redirect.
    A URL on another port is taken for another web server (a proxy), whose layout is its own.
    """
    url = section.values.get("baselogdirurl") or ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return
    served = int(section.values.get("logserver.port", 25880))
    where = (path, FACTORY_SECTION, "baseLogDirUrl")
    if not section.values.get("logserver.enabled"):
        if port == served:
            reader.warn(*where, f"{url} names logserver.port {served}, but logserver.enabled = False: this factory "
                        "serves no pilot logs there (enable it, or point baseLogDirUrl at the web server that serves "
                        "baseLogDir)")
        return
    if port != served:
        if "logserver.port" not in section.raw and parts.port is not None:
            reader.warn(*where, f"{url} names port {port}, but the web server listens on logserver.port {served} "
                        f"(APF 2.4 took the port from baseLogDirUrl): set logserver.port = {port}, unless a proxy "
                        f"on {port} forwards to {served}")
        return
    base = f"{parts.scheme}://{parts.netloc}"
    if parts.path.rstrip("/") == "":
        reader.warn(*where, f"{url} has no /logs path: the pilot log links made from it (APF 2.4 layout "
                    f"<url>/<YYYY-MM-DD>/<queue>/<file>) only work through a redirect to /logs/...; "
                    f"expected {base}/logs")
    elif parts.path.rstrip("/") != "/logs":
        reader.warn(*where, f"path {parts.path} is not served by this factory's web server (pilot logs are under "
                    f"/logs): every pilot log link made from it answers 404 (expected {base}/logs)")


def queue_files(reader: Reader, factory: Section, cancel: threading.Event | None = None
                ) -> list[tuple[str, configparser.ConfigParser]]:
    """(source, parsed file) of every queueConf entry and queueDirConf file; ``cancel`` ends a remote fetch."""
    factory_path = factory.source
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
    from_cric = factory.get("config.queues.plugin", "File") == "CRIC"
    if not sources and not from_cric:
        reader.error(factory_path, FACTORY_SECTION, "queueConf", "no queue files (expected queueConf or queueDirConf)")
    parsed = []
    if from_cric:  # first: a queue file's own keys for the same section win (APF 2.4's override = True)
        built = cric_source(reader, factory, cancel)
        if built is not None:
            parsed.append(built)
    for source in sources:
        if source.startswith(("http://", "https://")):
            parser = reader.parse_url(source, Fetching(
                factory.get("config.remote.timeout"), factory.get("config.remote.maxbytes"),
                remote_cache_dir(factory), cancel))
        else:
            parser = reader.parse_file(source)
        if parser is not None:
            parsed.append((source, parser))
    return parsed


def cric_selection(factory: Section) -> cric.Selection:
    option = factory.get
    return cric.Selection(option("config.queues.cric.vos"), option("config.queues.cric.clouds"),
                          option("config.queues.cric.sites"), option("config.queues.cric.activities"),
                          option("config.queues.cric.pilotmanager"), option("config.queues.cric.jobsperpilot"),
                          option("config.queues.cric.numfactories"))


def cric_source(reader: Reader, factory: Section, cancel: threading.Event | None = None
                ) -> tuple[str, configparser.ConfigParser] | None:
    """The queue sections built from CRIC (config/cric.py) as one more queue file, named ``cric:<url>``.

    A URL is fetched within config.remote.timeout and .maxbytes; when it fails or its answer
    is no pandaqueue listing, its last good copy is used (a warning, a factory problem);
    a PanDA queue or CE that cannot be read is skipped with a warning."""
    where = (factory.source, FACTORY_SECTION, "config.queues.cric.url")
    url = factory.get("config.queues.cric.url", "")
    if not url:
        reader.error(*where, "required with config.queues.plugin = CRIC (a URL or a file of CRIC's pandaqueue JSON)")
        return None
    shown = "cric:" + redact(url)
    try:
        if cric.is_url(url):
            got = remote.fetch(url, factory.get("config.remote.timeout"), factory.get("config.remote.maxbytes"),
                               remote.cache_file(remote_cache_dir(factory), url), check=cric.parse, cancel=cancel)
            if got.warning:
                reader.warn(shown, "", "", got.warning)
                reader.stale.append(got.warning)
            text = got.text
        else:
            text = cric.read_file(cric.local_path(url, os.path.dirname(factory.source)))
        queues = cric.parse(text)
    except (remote.FetchError, OSError, ValueError) as exc:
        reader.error(*where, f"cannot read CRIC's pandaqueue JSON: {redact(str(exc))}")
        return None
    defaults = ""
    if factory.get("config.queues.cric.defaults", ""):
        try:
            defaults = cric.read_file(factory.get("config.queues.cric.defaults"))
        except (OSError, ValueError) as exc:
            reader.error(factory.source, FACTORY_SECTION, "config.queues.cric.defaults", f"cannot read: {exc}")
            return None
    built = cric.build(queues, cric_selection(factory))
    for note in built.notes:
        reader.warn(shown, "", "", note)
    parser = reader.parse_text(cric.render(built, defaults, redact(url)), shown)
    return (shown, parser) if parser is not None else None


# ---------------------------------------------------------------- queues.conf


def plugin_key_table(registry: PluginRegistry) -> KeyTable:
    """Every queue-level plugin key, lower-case full name -> (canonical name, Key)."""
    table: KeyTable = {}
    for kind in QUEUE_KINDS:
        for plugin in registry.plugins(kind.name).values():
            table.update(lower_table(plugin.keys, plugin.key_prefix()))
    return table


def queue_section(
    reader: Reader, registry: PluginRegistry, sources: list[tuple[str, configparser.ConfigParser]], name: str
) -> QueueConfig:
    """One queue: its own keys, its plugins (by the registry's spelling), their keys.

    ``sources`` are the files defining the section, in queueConf order: merged key
    by key, a later file's own keys winning (its [DEFAULT] only fills keys still unset).
    """
    source = sources[-1][0]
    basedir = "" if "://" in source else os.path.dirname(source)
    queue = QueueConfig(name, " + ".join(src for src, _ in sources))
    merged: dict[str, str] = {}  # uninterpolated: %(...)s is resolved in the merged section
    places: dict[str, str] = {}
    for file, parser in sources:
        for key in parser[name]:
            place = origin(parser, name, key)
            if place == name or key not in merged:
                merged[key] = parser.get(name, key, raw=True)
                places[key] = place
                if place == "DEFAULT":
                    queue.inherited[key] = file
                else:
                    queue.inherited.pop(key, None)
    section = configparser.ConfigParser(interpolation=configparser.BasicInterpolation())
    section.read_dict({name: merged})
    where = functools.partial(_place, places, name)
    queue.raw = apf24.drop_none(reader.items(section, queue.source, name))
    _translate_apf24(reader, queue, where)
    reader.fill(queue, QUEUE_TABLE, basedir, where, enforce=lambda: queue.enabled)
    _check_executable(reader, queue, where)
    _check_wrapper_plugin(reader, queue, where)
    _resolve_plugins(reader, registry, queue, where)
    used = _fill_plugin_keys(reader, registry, queue, basedir, where)
    variables = {name.lower() for value in merged.values() for name in _VARIABLE.findall(value)}
    _check_other_keys(reader, registry, queue, used, basedir, where, variables)
    for lower, text in queue.raw.items():
        if lower.endswith("x509userproxy"):  # condor_attributes.x509userproxy: a proxy given by path
            _check_private_tmp(reader, queue.source, where(lower), lower, text)
        elif lower.endswith("condor_attributes"):
            for item in text.split(","):
                name, _, value = item.partition("=")
                if name.strip().lower() == "x509userproxy":
                    _check_private_tmp(reader, queue.source, where(lower), lower, value)
    return queue


# Under the shipped systemd unit (PrivateTmp=yes) the factory's /tmp and /var/tmp are its own.
PRIVATE_TMP = ("/tmp/", "/var/tmp/")
CREDENTIALS_DIR = "/var/lib/autopyfactory/credentials"


def _check_private_tmp(reader: Reader, file: str, section: str, key: str, value: object) -> None:
    """A credential under /tmp: the factory under systemd and HTCondor's daemons would see two different files."""
    path = os.path.normpath(str(value).strip()) if value else ""
    tmp = next((tmp.rstrip("/") for tmp in PRIVATE_TMP if path.startswith(tmp)), "")
    if tmp:
        reader.warn(file, section, key,
                    f"{path} is in {tmp}: under the systemd unit (PrivateTmp=yes) the factory has a {tmp} of its "
                    f"own, which HTCondor's daemons and the pilots' tools do not see; move it to {CREDENTIALS_DIR} "
                    f"(docs/operations.md, \"Credentials under systemd\")")


_VARIABLE = re.compile(r"%\(([^)]+)\)s")


def _check_executable(reader: Reader, queue: QueueConfig, where) -> None:
    """A warning (not an error: a grid worker node may have it) for an executable missing here."""
    executable = queue.values.get("executable")
    if not executable or not queue.enabled:
        return
    found = (os.path.isfile(executable) and os.access(executable, os.X_OK)) if os.sep in executable \
        else shutil.which(executable) is not None
    if not found:
        reader.warn(queue.source, where("executable"), "executable",
                    f"{executable!r} is not an executable file on this host: every pilot would fault"
                    " (fine only if it exists where the pilots run)")


@functools.cache
def _wrapper_stage():
    """The pilot wrapper's python stage and its built-in pilot plugins, as a worker node loads them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("apf_wrapper_stage", os.path.join(WRAPPERS, "apf_wrapper.py"))
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    saved = os.environ.pop("APF_WRAPPER_PLUGINS", None)  # the built-ins only: a site's own are on its nodes
    try:
        plugins, _ = stage.load_plugins()
    finally:
        if saved is not None:
            os.environ["APF_WRAPPER_PLUGINS"] = saved
    return stage, plugins


def _check_wrapper_plugin(reader: Reader, queue: QueueConfig, where) -> None:
    """A warning for pilots of the shipped wrapper that would have nothing to run (they would all exit 70):
    a --wrappervo no built-in pilot plugin claims, with no pilot command and no Local WMS spool, or an
    unknown --wrapperplugin. Only a warning: a site may ship its own plugins to its nodes."""
    executable = queue.values.get("executable")
    if not queue.enabled or (executable and os.path.basename(executable) != "apf-wrapper.sh"):
        return
    try:
        argv = shlex.split(queue.values.get("executable.arguments") or "")
    except ValueError:
        return  # said elsewhere
    stage, plugins = _wrapper_stage()
    options = stage.parse(argv)
    environ = " ".join(str(v) for k, v in queue.values.items() if k.endswith(".environ") and v)
    if options.plugin:
        if options.plugin.lower() not in plugins:
            reader.warn(queue.source, where("executable.arguments"), "executable.arguments",
                        f"--wrapperplugin={options.plugin}: the pilot wrapper has no such pilot plugin (it has "
                        f"{', '.join(sorted(plugins))}): every pilot would exit 70 unless the worker nodes add it "
                        "($APF_WRAPPER_PLUGINS)")
        return
    vo = options.vo.lower()
    if not vo or options.extra or "APF_PILOT=" in environ:
        return
    if any(vo in [v.lower() for v in getattr(module, "VOS", ())] for module in plugins.values()):
        return
    if options.serverurl.startswith("file://") or "APF_WMS_SPOOLDIR=" in environ:
        return
    reader.warn(queue.source, where("executable.arguments"), "executable.arguments",
                f"--wrappervo={options.vo}: the pilot wrapper has no pilot plugin for this VO and no pilot command "
                "to run: every pilot would exit 70; give the pilot command after -- (or APF_PILOT=... in "
                "batchsubmit.<plugin>.environ), name a pilot plugin with --wrapperplugin (built in: "
                f"{', '.join(sorted(plugins))}), or ship one with VOS = ({vo!r},) (docs/operations.md)")


def _place(places: dict[str, str], name: str, key: str) -> str:
    """Section a key is written in (the queue's own or DEFAULT)."""
    return places.get(key, name)


def _translate_apf24(reader: Reader, queue: QueueConfig, where) -> None:
    """APF 2.4 keys to their names here: aliased plugins' keys, sched.activated.*, nordugridrsl.*."""
    raw = queue.raw
    for key in list(raw):
        new = apf24.renamed_key(key)
        if new is not None:
            value = raw.pop(key)
            raw.setdefault(new, value)
            old = next(prefix for prefix in apf24.KEY_PREFIXES if key.startswith(prefix)) + "*"
            reader.warn_once(queue.source, where(key), old, f"APF 2.4 keys, read as {new.rsplit('.', 1)[0]}.*")
    chain = split_list(raw.get("schedplugin", ""))
    if any(step.lower() == "activated" for step in chain):
        steps = apf24.activated_chain(raw)
        for param, (_, new) in apf24.ACTIVATED_KEYS.items():
            if f"sched.activated.{param}" in raw:
                raw.setdefault(new, raw.pop(f"sched.activated.{param}"))
        raw["schedplugin"] = ", ".join(
            ", ".join(steps) if step.lower() == "activated" else step for step in chain)
        reader.warn_once(queue.source, where("schedplugin"), "schedplugin",
                         f"Activated is APF 2.4's name; here it is schedplugin = {', '.join(steps)}",
                         kind=("activated", raw["schedplugin"]))
    if any(key.startswith("nordugridrsl.") for key in raw):
        keys, left = apf24.nordugrid_keys(raw)
        for key, value in keys.items():
            if key.endswith(".environ") or key not in raw:  # the environment is already merged with its own
                raw[key] = value
        for key in [key for key in raw if key.startswith(("nordugridrsl.queue", "nordugridrsl.nordugridrsladd",
                                                             "nordugridrsl.addenv."))]:
            del raw[key]
        if keys:
            reader.warn_once(queue.source, where("batchsubmitplugin"), "nordugridrsl.*",
                             "APF 2.4 keys, read as " + ", ".join(sorted(keys)))
        for part in left:
            reader.warn_once(queue.source, queue.name, part.split(" ")[0],
                             f"APF 2.4 xRSL with no equivalent for ARC's REST interface, ignored: {part}")
    if raw.get("override", "").strip().lower() in ("false", "0", "no", "off"):
        reader.warn_once(queue.source, where("override"), "override",
                         "override = False: there is no schedconfig/AGIS source to take values from here, "
                         "so this file's values are used (as with override = True)")


def find_plugin(reader: Reader, registry: PluginRegistry, kind_name: str, name: str,
                at: tuple[str, str, str], enabled: bool = True) -> type | None:
    """The plugin ``name`` (or the one an APF 2.4 alias names); else report why there is none.

    ``at`` is (file, section, key) for the message. A plugin that no longer
    exists is an error, a warning for a disabled queue; an unknown one is an
    error with the closest name.
    """
    kind = KINDS[kind_name]
    plugin = registry.find(kind.name, name)
    if plugin is not None:
        return plugin
    alias = apf24.PLUGIN_ALIASES.get((kind.name, name.lower()))
    if alias is not None and registry.find(kind.name, alias) is not None:
        reader.warn_once(*at, f"{name} is APF 2.4's name of the {alias} plugin (write {at[2]} = {alias})",
                         kind=("alias", kind.name, name.lower()))
        return registry.find(kind.name, alias)
    gone = apf24.GONE_PLUGINS.get((kind.name, name.lower()))
    if gone is not None:
        if enabled:
            reader.error(*at, f"the {kind.title} plugin {name} no longer exists: {gone}")
        else:
            reader.warn(*at, f"the {kind.title} plugin {name} no longer exists: {gone} "
                        "(only a warning: the queue is disabled)")
        return None
    available = registry.plugins(kind.name)
    reader.error(*at, f"unknown {kind.title} plugin (expected one of {', '.join(sorted(available)) or 'none'}, "
                 f"got {name!r}){did_you_mean(name, available)}")
    return None


def _resolve_plugins(reader: Reader, registry: PluginRegistry, queue: QueueConfig, where) -> None:
    """Plugin names must exist; keep the registry's spelling."""
    for kind in QUEUE_KINDS:
        selector = kind.selector
        if selector not in queue.values:
            continue
        chosen = queue.values[selector]
        resolved = []
        for plugin_name in chosen if isinstance(chosen, list) else [chosen]:
            at = (queue.source, where(selector), selector)
            plugin = find_plugin(reader, registry, kind.name, plugin_name, at, queue.enabled)
            if plugin is not None:
                resolved.append(plugin.name)
                if queue.enabled:
                    for why in plugin.missing():
                        reader.error(queue.source, where(selector), selector, why)
        queue.values[selector] = resolved if isinstance(chosen, list) else (resolved[0] if resolved else chosen)


def _fill_plugin_keys(reader: Reader, registry: PluginRegistry, queue: QueueConfig, basedir: str, where) -> KeyTable:
    """The keys of the plugins this queue uses (key families ``<param>.*`` aside); returns their table."""
    used: KeyTable = {}
    for kind in QUEUE_KINDS:
        chosen = queue.values.get(kind.selector)
        for plugin_name in chosen if isinstance(chosen, list) else [chosen]:
            plugin = registry.find(kind.name, plugin_name) if plugin_name else None
            if plugin is None:
                continue
            keys = {param: key for param, key in plugin.keys.items() if not param.endswith("*")}
            table = lower_table(keys, plugin.key_prefix())
            reader.fill(queue, table, basedir, where, f"required by the {plugin.name} plugin, missing",
                        enforce=lambda: queue.enabled)
            used.update(table)
    return used


def _check_other_keys(
    reader: Reader, registry: PluginRegistry, queue: QueueConfig, used: KeyTable, basedir: str, where,
    variables: set[str] | None = None,
) -> None:
    """Keys of plugins the queue does not use are still typed; the rest is unknown (a warning),
    except ``variables``: names only there for ``%(name)s`` in other values (APF 2.4's periodic_remove)."""
    known = plugin_key_table(registry)
    for lower, text in queue.raw.items():
        if lower in QUEUE_TABLE or lower in used:
            continue
        if lower in (variables or ()) and "." not in lower:
            continue
        found = known.get(lower) or _family_key(known, lower)
        if found is not None:
            value = reader.typed(queue.source, where(lower), found[0], found[1], text, basedir)
            if value is not MISSING:
                queue.values[lower] = value
            continue
        # a key written in [DEFAULT] is reported once, not once per queue
        warn = reader.warn_once if where(lower) == "DEFAULT" else reader.warn
        old = apf24.ignored(lower, apf24.IGNORED_QUEUE_KEYS)
        if old is not None:
            reader.warn_once(queue.source, where(lower), old[0], f"APF 2.4 key, ignored: {old[1]}")
            continue
        parts = lower.split(".")
        kind = KINDS.get(parts[0]) if len(parts) >= 3 else None
        if kind is not None and kind.in_queue and registry.find(kind.name, parts[1]) is None:
            alias = apf24.PLUGIN_ALIASES.get((kind.name, parts[1]))
            if alias is not None:
                reader.warn_once(queue.source, where(lower), f"{parts[0]}.{parts[1]}.*",
                                 f"keys of APF 2.4's {parts[1]} plugin ({alias} here), used only by queues "
                                 "that name it; ignored elsewhere")
                continue
            gone = apf24.GONE_PLUGINS.get((kind.name, parts[1]))
            if gone is not None:
                reader.warn_once(queue.source, where(lower), f"{parts[0]}.{parts[1]}.*",
                                 f"keys of a plugin that no longer exists, ignored ({gone})")
                continue
            available = ", ".join(sorted(registry.plugins(kind.name))) or "none"
            warn(queue.source, where(lower), lower,
                 f"key of a {kind.title} plugin that is not installed, ignored (available: {available})")
            continue
        warn(queue.source, where(lower), lower,
             "unknown key, ignored" + closest(lower, list(QUEUE_TABLE) + list(known)))


def _family_key(known: KeyTable, lower: str) -> tuple[str, object] | None:
    """A key of a family declared as ``<param>.*`` (e.g. condor_attributes.<name>)."""
    for full, (_, key) in known.items():
        if full.endswith(".*") and lower.startswith(full[:-1]) and len(lower) > len(full) - 1:
            return lower, key
    return None


# ---------------------------------------------------------------- auth.conf, monitor.conf


def profile_file(reader: Reader, registry: PluginRegistry, path: str, kind_name: str) -> dict[str, Section]:
    """auth.conf / monitor.conf: one section per profile, the kind's ``selector`` key names its plugin."""
    kind = KINDS[kind_name]
    selector = kind.selector
    if not path:
        return {}
    parser = reader.parse_file(path)
    if parser is None:
        return {}
    profiles: dict[str, Section] = {}
    for name in parser.sections():
        section = Section(name, path)
        section.raw = apf24.drop_none(reader.items(parser, path, name))
        for old_key, new_key in apf24.rename_keys(section.raw, apf24.RENAMED_PROFILE_KEYS):
            reader.warn_once(path, origin(parser, name, old_key.lower()), old_key,
                             f"APF 2.4 key, read as {new_key}")
        profiles[name] = section
        plugin_name = section.raw.get(selector)
        if not plugin_name:
            reader.error(path, name, selector, f"required key missing (expected a {kind.title} plugin name)")
            continue
        plugin = find_plugin(reader, registry, kind.name, plugin_name, (path, origin(parser, name, selector), selector))
        if plugin is None:
            continue
        other = _keys_of_another_plugin(registry, kind.name, plugin, parser, name)
        if other is not None and origin(parser, name, selector) == "DEFAULT":
            reader.error(path, name, selector, f"{selector} = {plugin.name} comes from [DEFAULT], but this profile's "
                         f"keys are the {other.name} plugin's (write {selector} = {other.name} in [{name}])")
            continue
        section.values[selector] = plugin.name
        table = lower_table(plugin.keys, plugin.key_prefix())
        reader.fill(section, table, os.path.dirname(path), missing=f"required by the {plugin.name} plugin, missing")
        for lower, (full, key) in table.items():
            if key.kind == "path" and lower in section.raw:
                _check_private_tmp(reader, path, origin(parser, name, lower), full, section.values.get(lower))
        others = {other.key_prefix() for other in registry.plugins(kind.name).values() if other is not plugin}
        for lower in section.raw:
            if lower == selector or lower in table:
                continue
            place = origin(parser, name, lower)
            if place == "DEFAULT" and lower.startswith(tuple(others)):
                continue  # a [DEFAULT] for the X509 profiles, inherited by an SSH one too
            old = apf24.ignored(lower, apf24.IGNORED_PROFILE_KEYS)
            if old is not None:
                reader.warn_once(path, place, old[0], f"APF 2.4 key, ignored: {old[1]}")
                continue
            warn = reader.warn_once if place == "DEFAULT" else reader.warn
            warn(path, place, lower, "unknown key, ignored" + closest(lower, table))
    return profiles


def _keys_of_another_plugin(registry: PluginRegistry, kind_name: str, plugin: type,
                            parser: configparser.ConfigParser, name: str) -> type | None:
    """The plugin of the kind whose key prefix every key written in section ``name`` has, when that is
    not ``plugin`` (an SSH profile under a [DEFAULT] plugin = X509), else None."""
    own = [key for key in parser._sections.get(name, {}) if "." in key]  # type: ignore[attr-defined]
    prefixes = {key.split(".", 1)[0] for key in own}
    if len(prefixes) != 1 or plugin.key_prefix().rstrip(".") in prefixes:
        return None
    return next((other for other in registry.plugins(kind_name).values()
                 if other.key_prefix().rstrip(".") in prefixes), None)


# ---------------------------------------------------------------- across files


def check_references(
    reader: Reader, queues: dict[str, QueueConfig], auth: dict[str, Section], monitor: dict[str, Section]
) -> None:
    """monitorsection and ``<kind>.<plugin>.proxy`` must name existing profiles."""
    for queue in queues.values():
        for section in queue.values.get("monitorsection", []):
            if section not in monitor:
                reader.error(
                    queue.source, queue.name, "monitorsection",
                    f"no section [{section}] in monitorConf "
                    f"(expected one of {', '.join(monitor) or 'none'}, got {section!r})",
                )
        ssh_profile = queue.values.get("batchsubmit.condorssh.authprofile")
        if ssh_profile and queue.values.get("batchsubmitplugin") == "CondorSSH":
            plugin = auth[ssh_profile].values.get("plugin") if ssh_profile in auth else None
            if plugin != "SSH":
                reader.error(queue.source, queue.name, "batchsubmit.condorssh.authprofile",
                             f"no SSH profile [{ssh_profile}] in authConf (expected a section with plugin = SSH, "
                             f"got {'plugin = ' + plugin if plugin else 'no such section'})")
        for plugin_kind in ("batchsubmit", "wmsstatus"):
            plugin_name = queue.values.get(f"{plugin_kind}plugin")
            if not plugin_name:
                continue
            proxy_key = key_prefix(plugin_kind, plugin_name) + "proxy"
            profile = queue.values.get(proxy_key)
            if profile and profile not in auth:
                reader.error(
                    queue.source, queue.name, proxy_key,
                    f"no profile [{profile}] in authConf "
                    f"(expected one of {', '.join(auth) or 'none'}, got {profile!r})",
                )


# ---------------------------------------------------------------- before running

PLACEHOLDER = "CHANGEME"


def placeholders(config: FactoryConfig) -> list[Problem]:
    """Values still holding the shipped placeholder: the factory must not run with them."""
    sections = [config.factory, *config.queues.values(), *config.auth.values(), *config.monitor.values()]
    names = {key.lower(): key for key in (*FACTORY_KEYS, *QUEUE_KEYS)}
    return [Problem(section.source, section.name, names.get(key, key),
                    f"still the placeholder {value!r}: set it for this site")
            for section in sections for key, value in section.raw.items() if PLACEHOLDER in value.upper()]
