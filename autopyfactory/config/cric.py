"""Queues from CRIC: queue sections built from the CRIC pandaqueue JSON (what APF 2.4 did from AGIS).

The JSON is CRIC's pandaqueue listing, ``{PANDA_QUEUE: {field: value, ...}, ...}``
(a list of such objects, each with ``name``, is read too). For every PanDA
queue with ``pilot_manager`` in the wanted ones (``apf``), ``resource_type =
grid`` and ``site_state = active`` (and the VO, cloud, site and activity
filters), one section per CE of its ``queues`` that is ``ce_state = active``
and ``ce_status = production``, named ``<panda_resource>-<ce_host>``:

- ``htcondor-ce`` -> ``CondorCE``, ``gridresource = <ce_endpoint>``, and the CE
  attributes ``+maxMemory`` (``maxrss``, else ``maxmemory``), ``+xcount``
  (``corecount``, 1 when unset), ``+voactivity`` (``type``), ``+remote_queue``
  (``ce_queue_name`` unless ``default``), ``+maxWallTime`` (``ce_queue_maxwctime``);
- ``arc-ce`` -> ``CondorARC``, ``gridresource = <ce_host>``, and what APF 2.4
  wrote as xRSL, in the ADL of ARC's REST interface (``arc_resources``):
  ``QueueName``, count -> ``SlotRequirement`` (``NumberOfSlots``, ``SlotsPerHost``),
  memory per core (``maxrss``, else ``maxmemory``, / ``corecount``, MB) ->
  ``IndividualPhysicalMemory`` (bytes), walltime (``maxtime``, s) -> ``WallTime``,
  cputime (``maxtime x corecount``) -> ``TotalCPUTime``;
- ``sched.scale.factor = 1 / numfactories / CEs of the PanDA queue / jobsperpilot``;
- ``wmsqueue = <panda_resource>``, ``batchqueue = <PanDA queue name>``.

A PanDA queue or CE entry that cannot be read is skipped and said (``notes``):
a bad entry never breaks the others. docs/cric.md has the whole story.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from autopyfactory.paths import name_problem

FLAVOURS = {"htcondor-ce": "CondorCE", "arc-ce": "CondorARC"}
MAX_FILE_BYTES = 64 * 1024 * 1024  # a local CRIC file; URLs are bounded by config.remote.maxbytes


@dataclass(frozen=True)
class Selection:
    """Which PanDA queues to take (empty lists: all) and how the scale factor is computed."""

    vos: list[str] = field(default_factory=list)
    clouds: list[str] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)  # atlas_site, site or panda_resource
    activities: list[str] = field(default_factory=list)  # the PanDA queue's type: production, analysis, unified
    pilot_managers: list[str] = field(default_factory=lambda: ["apf"])
    jobsperpilot: float = 1.0
    numfactories: float = 1.0


@dataclass
class Built:
    """Sections built from CRIC (section -> key -> value text) and what was skipped, one line each."""

    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def parse(text: str) -> dict[str, dict]:
    """The PanDA queues of a CRIC pandaqueue JSON, by name; ValueError for a document that is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if isinstance(data, list):
        data = {str(item.get("name")): item for item in data if isinstance(item, dict) and item.get("name")}
    if not isinstance(data, dict) or not data:
        raise ValueError("not a CRIC pandaqueue listing (expected a JSON object of PanDA queues)")
    return {str(name): entry for name, entry in data.items()}


def _lower(value: Any) -> str:
    return str(value or "").strip().lower()


def _number(entry: dict, key: str) -> int | None:
    """A positive whole number of the entry, or None when it is unset (0, null, missing)."""
    value = entry.get(key)
    if value in (None, "", 0, "0"):
        return None
    number = int(float(value))  # ValueError/TypeError: a bad entry
    if number < 0:
        raise ValueError(f"{key} is negative ({value!r})")
    return number or None


def wanted(name: str, entry: dict, selection: Selection) -> str | None:
    """Why the PanDA queue is not taken, or None when it is."""
    checks = [
        ("pilot_manager", _lower(entry.get("pilot_manager")), selection.pilot_managers),
        ("resource_type", _lower(entry.get("resource_type")), ["grid"]),
        ("site_state", _lower(entry.get("site_state")), ["active"]),
        ("vo_name", _lower(entry.get("vo_name")), selection.vos),
        ("cloud", _lower(entry.get("cloud")), selection.clouds),
        ("type", _lower(entry.get("type")), selection.activities),
    ]
    for key, value, allowed in checks:
        if allowed and value not in [item.lower() for item in allowed]:
            return f"{key} = {value or 'unset'}"
    if selection.sites:
        names = {_lower(entry.get(key)) for key in ("atlas_site", "site", "panda_resource")} | {name.lower()}
        if not names & {site.lower() for site in selection.sites}:
            return "site not selected"
    return None


def build(queues: dict[str, dict], selection: Selection) -> Built:
    """The queue sections of the PanDA queues ``selection`` takes; each bad entry skipped with a note."""
    built = Built()
    for name, entry in sorted(queues.items()):
        try:
            if not isinstance(entry, dict):
                raise ValueError("not a JSON object")
            if wanted(name, entry, selection) is not None:
                continue
            sections = _panda_queue(name, entry, selection, built.notes)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            built.notes.append(f"PanDA queue {name}: skipped, {type(exc).__name__}: {exc}")
            continue
        for section, values in sections.items():
            if section in built.sections:
                built.notes.append(f"PanDA queue {name}: section [{section}] already built from another "
                                   "PanDA queue, skipped")
                continue
            built.sections[section] = values
    return built


def _panda_queue(name: str, entry: dict, selection: Selection, notes: list[str]) -> dict[str, dict[str, str]]:
    resource = str(entry.get("panda_resource") or name)
    corecount = _number(entry, "corecount") or 1
    memory = _number(entry, "maxrss") or _number(entry, "maxmemory")
    maxtime = _number(entry, "maxtime")
    ces = []
    for ce in entry.get("queues") or []:
        try:
            if not isinstance(ce, dict):
                raise ValueError("not a JSON object")
            if _lower(ce.get("ce_state")) != "active" or _lower(ce.get("ce_status")) != "production":
                continue
            if _lower(ce.get("ce_queue_status")) not in ("", "production", "active"):
                continue
            flavour = _lower(ce.get("ce_flavour"))
            if flavour not in FLAVOURS:
                notes.append(f"PanDA queue {name}: CE {ce.get('ce_endpoint')} skipped, ce_flavour {flavour or 'unset'} "
                             f"has no submit plugin (expected one of {', '.join(FLAVOURS)})")
                continue
            endpoint = str(ce["ce_endpoint"]).strip()
            host = endpoint.split(":")[0]
            if not host or name_problem(f"{resource}-{host}"):
                raise ValueError(f"ce_endpoint {endpoint!r} gives no usable section name")
            ces.append((flavour, endpoint, host, ce))
        except (ValueError, TypeError, KeyError) as exc:
            notes.append(f"PanDA queue {name}: a CE skipped, {type(exc).__name__}: {exc}")
    if not ces:
        notes.append(f"PanDA queue {name}: no active production CE with a known ce_flavour")
        return {}
    scale = 1.0 / selection.numfactories / len(ces) / selection.jobsperpilot
    sections = {}
    for flavour, endpoint, host, ce in ces:
        plugin = FLAVOURS[flavour]
        prefix = f"batchsubmit.{plugin.lower()}."
        attrs = prefix + "condor_attributes."
        values = {
            "enabled": "True",
            "wmsqueue": resource,
            "batchqueue": name,
            "batchsubmitplugin": plugin,
            prefix + "gridresource": endpoint if plugin == "CondorCE" else host,
            "sched.scale.factor": repr(scale),
        }
        queue_name = str(ce.get("ce_queue_name") or "").strip()
        if plugin == "CondorCE":
            if memory:
                values[attrs + "+maxMemory"] = str(memory)
            values[attrs + "+xcount"] = str(corecount)
            if entry.get("type"):
                values[attrs + "+voactivity"] = json.dumps(str(entry["type"]))
            if queue_name and queue_name.lower() != "default":
                values[attrs + "+remote_queue"] = json.dumps(queue_name)
            walltime = _number(ce, "ce_queue_maxwctime")
            if walltime:
                values[attrs + "+maxWallTime"] = str(walltime)
        else:
            values[attrs + "arc_resources"] = arc_resources(queue_name, corecount, memory, maxtime)
        sections[f"{resource}-{host}"] = values
    return sections


def arc_resources(queue: str, corecount: int, memory: int | None, maxtime: int | None) -> str:
    """ADL resources for ARC's REST interface: what APF 2.4's xRSL said (count, memory per core, walltime,
    cputime)."""
    parts = [f"<QueueName>{queue}</QueueName>"] if queue and queue.lower() != "default" else []
    parts.append(f"<SlotRequirement><NumberOfSlots>{corecount}</NumberOfSlots>"
                 f"<SlotsPerHost>{corecount}</SlotsPerHost></SlotRequirement>")
    if memory:
        parts.append(f"<IndividualPhysicalMemory>{memory // corecount * 1024 * 1024}</IndividualPhysicalMemory>")
    if maxtime:
        parts.append(f"<WallTime>{maxtime}</WallTime><TotalCPUTime>{maxtime * corecount}</TotalCPUTime>")
    return "".join(parts)


def read_file(path: str) -> str:
    """A local CRIC JSON file, at most MAX_FILE_BYTES; OSError/ValueError say why not."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8")


def render(built: Built, defaults: str = "", source: str = "") -> str:
    """A queues.conf: the defaults file's text (its [DEFAULT]: every section's template), then one
    section per CE queue, keys in a stable order."""
    lines = [f"# queues built from CRIC{' (' + source + ')' if source else ''} by apf queues-from-cric"]
    lines += [f"# skipped: {note}" for note in built.notes]
    text = "\n".join(lines) + "\n\n"
    if defaults.strip():
        text += defaults.rstrip() + "\n\n"
    for section, values in built.sections.items():
        text += f"[{section}]\n" + "".join(f"{key} = {escape(value)}\n" for key, value in values.items()) + "\n"
    return text


def escape(value: str) -> str:
    """A value as configparser reads it back: ``%`` doubled (interpolation)."""
    return value.replace("%", "%%")


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def local_path(source: str, basedir: str) -> str:
    path = os.path.expanduser(source.removeprefix("file://"))
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(basedir, path))
