"""What an APF 2.4 configuration means here: plugin aliases, plugins gone, keys renamed or ignored.

Each table holds one idea; ``docs/migration.md`` lists the same for operators.
Translation happens on a section's raw text, before the one fill loop types it,
so an APF 2.4 file and its 3.0 spelling end up as the same typed section.
"""

from __future__ import annotations

import fnmatch
import re
import shlex

# the value APF 2.4 wrote for "not set"
NONE = "None"

# (kind, APF 2.4 name, lower-case) -> the plugin that does its job here
PLUGIN_ALIASES: dict[tuple[str, str], str] = {
    ("batchsubmit", "condorosgce"): "CondorCE",
    ("batchsubmit", "condornordugrid"): "CondorARC",
    ("sched", "activated"): "Ready",
    ("monitor", "apf"): "APFMon",
    ("sched", "simplenqueue"): "NQueue",
}

_GRAM = "Globus GRAM CEs are gone from the grid; use CondorCE (HTCondor-CE) or CondorARC"
# (kind, APF 2.4 name, lower-case) -> why it is gone and what to use instead
GONE_PLUGINS: dict[tuple[str, str], str] = {
    ("batchsubmit", "condorgt2"): _GRAM,
    ("batchsubmit", "condorgt5"): _GRAM,
    ("batchsubmit", "condorgram"): _GRAM,
    ("batchsubmit", "condorcream"): "CREAM CEs are retired; use CondorCE (HTCondor-CE) or CondorARC",
    ("batchsubmit", "condorec2"): "cloud VMs are not started by this version; use CondorSSH, Slurm or CondorLocal",
    ("batchsubmit", "condorpbs"): "use CondorSSH with batchsubmit.condorssh.batch = pbs",
    ("batchsubmit", "condorlsf"): "use CondorSSH with batchsubmit.condorssh.batch = lsf",
    ("batchsubmit", "condorbosco"): "use CondorSSH",
    ("sched", "simple"): "use schedplugin = Ready, MaxPerCycle, MaxPending",
    ("sched", "trivial"): "use schedplugin = Ready",
}

# key prefixes of aliased plugins -> the prefix of the plugin that replaces them
KEY_PREFIXES: dict[str, str] = {
    "batchsubmit.condorosgce.": "batchsubmit.condorce.",
    "batchsubmit.condornordugrid.": "batchsubmit.condorarc.",
    "sched.simplenqueue.": "sched.nqueue.",
}

# sched.activated.<param> -> (the chain step that does it here, its key)
ACTIVATED_KEYS: dict[str, tuple[str, str]] = {
    "testmode.pilots": ("StatusTest", "sched.statustest.pilots"),
    "min_pilots_per_cycle": ("MinPerCycle", "sched.minpercycle.minimum"),
    "max_pilots_per_cycle": ("MaxPerCycle", "sched.maxpercycle.maximum"),
    "max_pilots_pending": ("MaxPending", "sched.maxpending.maximum"),
    "max_jobs_torun": ("MaxToRun", "sched.maxtorun.maximum"),
}

_NOT_STARTED = "removal only ever takes pilots that have not started, newest first"
# APF 2.4 keys read no more (fnmatch patterns) -> why; a warning once per pattern
IGNORED_QUEUE_KEYS: dict[str, str] = {
    "globusrsl.*": "Globus GRAM RSL; GRAM CEs are gone (CondorGT2/CondorGT5 no longer exist)",
    "sched.activated.default": "Ready submits nothing while the WMS or batch status is unknown",
    "sched.activated.testmode.allowed": "read with sched.activated.testmode.pilots (StatusTest)",
    "batchsubmit.*.submitargs": "pilots are submitted through the HTCondor bindings, not condor_submit; "
                                "use batchsubmit.<plugin>.condor_attributes.<name>",
    "batchsubmit.*.peaceful": _NOT_STARTED,
    "batchsubmit.*.killorder": _NOT_STARTED,
    "batchsubmit.*.remote_condor_schedd": "the CE's schedd and collector are both gridresource[:port]",
    "batchsubmit.*.remote_condor_collector": "the CE's schedd and collector are both gridresource[:port]",
    "autofill": "a queue's keys come from its sections (queues.conf, and CRIC with [Factory] "
                "config.queues.plugin = CRIC: docs/cric.md)",
    "configplugin": "a queue's keys come from its sections (queues.conf, and CRIC with [Factory] "
                    "config.queues.plugin = CRIC: docs/cric.md)",
    "status": "the queue status comes from the WMS (StatusTest/StatusOffline read it)",
    "cleanlogs.maxdays": "use cleanlogs.keepdays",
    "nordugridrsl.jobname": "HTCondor names the ARC job",
    "sched.nqueue.default": "nothing is submitted while the WMS or batch status is unknown",
    "sched.nqueue.pilotlimit": "use MaxToRun (sched.maxtorun.maximum) after NQueue",
    "sched.nqueue.transferringlimit": "use MaxToRun (sched.maxtorun.maximum) after NQueue",
    "sched.nqueue.maxpilotspercycle": "use MaxPerCycle (sched.maxpercycle.maximum) after NQueue",
    "nordugridrsl.nordugridrsl": "ARC's REST interface takes no xRSL; use nordugridrsl.queue, "
                                 "nordugridrsl.addenv.<NAME> or batchsubmit.condorarc.condor_attributes.*",
}

IGNORED_FACTORY_KEYS: dict[str, str] = {
    "proxymanager.*": "each auth.conf profile is checked every <plugin>.checktime seconds",
    "authmanager.*": "each auth.conf profile is checked every <plugin>.checktime seconds",
    "mappingsConf": "the pilot wrapper maps VO names itself (docs/migration.md, 'The pilot wrapper')",
    "cycles": "the factory runs until stopped; for a bounded run use autopyfactory --cycles N",
    "logserver.index": "the log server always lists directories",
    "monitor.section": "write monitorsection = <section> in queues.conf (its [DEFAULT] for every queue): "
                       "the factory registers with every monitor section its queues name",
    "monitor.interval": "monitors are told after every cycle of a queue, off the queue's thread",
    "queuesconfig.*": "queues come from queueConf/queueDirConf and config.queues.cric.* (docs/cric.md)",
    "config.queues.agis.sleep": "CRIC is read again at every reload (config.reconfig.interval)",
    "proxyConf": "APF 2.3's proxy.conf is not read; write its profiles into authConf "
                 "(plugin = X509, x509.<key>)",
}

RENAMED_FACTORY_KEYS: dict[str, str] = {  # APF 2.4 [Factory] key -> the key that means the same here
    "factoryMinEmailRepeatSeconds": "alarms.interval",
    "queuesconfigplugin": "config.queues.plugin",
    "config.queues.agis.baseurl": "config.queues.cric.url",
    "config.queues.agis.defaultsfile": "config.queues.cric.defaults",
    "config.queues.agis.defaultsfiles": "config.queues.cric.defaults",
    "config.queues.agis.vos": "config.queues.cric.vos",
    "config.queues.agis.clouds": "config.queues.cric.clouds",
    "config.queues.agis.activities": "config.queues.cric.activities",
    "config.queues.agis.pilotmanager": "config.queues.cric.pilotmanager",
    "config.queues.agis.jobsperpilot": "config.queues.cric.jobsperpilot",
    "config.queues.agis.numfactories": "config.queues.cric.numfactories",
}


def queues_plugin(raw: dict[str, str]) -> str:
    """``config.queues.plugin`` spelt as here (APF 2.4's ``Agis`` is ``CRIC``, AGIS's successor);
    the warning to give, or ""."""
    value = raw.get("config.queues.plugin", "").strip()
    spelling = {"file": "File", "cric": "CRIC", "agis": "CRIC"}.get(value.lower())
    if spelling is None:
        return ""
    raw["config.queues.plugin"] = spelling
    return "Agis is APF 2.4's name: AGIS is now CRIC (write config.queues.plugin = CRIC)" \
        if value.lower() == "agis" else ""

RENAMED_PROFILE_KEYS: dict[str, str] = {  # APF 2.4 auth.conf key -> the key that means the same here
    "x509.myproxy_hostname": "x509.myproxyhost",
    "x509.myproxy_username": "x509.myproxyuser",
    "ssh.privatekeyfile": "ssh.privatekey",
    "ssh.publickeyfile": "ssh.publickey",
    "ssh.privkeypassfile": "ssh.passwordfile",
}


def rename_keys(raw: dict[str, str], table: dict[str, str]) -> list[tuple[str, str]]:
    """Read APF 2.4's keys under their new names (``raw`` has lower-case keys); (old, new)
    of each one renamed. The new name wins when both are set."""
    renamed = []
    for old, new in table.items():
        if old.lower() in raw:
            value = raw.pop(old.lower())
            raw.setdefault(new.lower(), value)
            renamed.append((old, new))
    return renamed


def reconfig(raw: dict[str, str]) -> str:
    """APF 2.4's ``config.reconfig = True|False`` beside ``config.reconfig.interval``: False turns
    the periodic re-read off (interval 0). The warning to give, or "" when the key is not set."""
    value = raw.pop("config.reconfig", None)
    if value is None:
        return ""
    if value.strip().lower() in ("false", "0", "no", "off"):
        raw["config.reconfig.interval"] = "0"
        return "APF 2.4 key: config.reconfig = False is config.reconfig.interval = 0 here (no periodic re-read)"
    return "APF 2.4 key: the configuration is re-read every config.reconfig.interval seconds (0: never)"


IGNORED_PROFILE_KEYS: dict[str, str] = {
    "authbasedir": "profile paths are absolute or relative to auth.conf",
    "x509.interruptcheck": "checks are interrupted at once on stop",
    "x509.initdelay": "the first check runs at start",
    "x509.owner": "proxies are owned by the factory user",
    "x509.retriever_list": "MyProxy retrieval uses x509.usercert/x509.userkey or x509.myproxypassfile",
    "x509.myproxy_passphrase": "a passphrase is not kept in auth.conf: write it to a file only the factory "
                               "user can read and name it with x509.myproxypassfile",
    "ssh.type": "the key type is read from the key file",
}


def ignored(key: str, table: dict[str, str]) -> tuple[str, str] | None:
    """(pattern, why) of a key APF 2.4 used that this version does not read, else None."""
    for pattern, why in table.items():
        if fnmatch.fnmatchcase(key, pattern.lower()):
            return pattern, why
    return None


def drop_none(raw: dict[str, str]) -> dict[str, str]:
    """APF 2.4's ``None`` means "not set": the key is left out (its default applies)."""
    return {key: value for key, value in raw.items() if value.strip() != NONE}


def renamed_key(key: str) -> str | None:
    """The key of an aliased plugin under its new prefix, e.g. batchsubmit.condorosgce.port ->
    batchsubmit.condorce.port; None when ``key`` is not one of those."""
    for old, new in KEY_PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old):]
    return None


def activated_chain(raw: dict[str, str]) -> list[str]:
    """What ``schedplugin = Activated`` is here: Ready, then a step for each sched.activated.* limit set."""
    chain = ["Ready"]
    for param, (step, _) in ACTIVATED_KEYS.items():
        if f"sched.activated.{param}" not in raw:
            continue
        if step == "StatusTest" and raw.get("sched.activated.testmode.allowed", "True").lower() in ("false", "0", "no", "off"):
            continue
        chain.append(step)
    return chain


_RTE = re.compile(r"\(\s*runtimeenvironment\s*=\s*([^)]*?)\s*\)", re.IGNORECASE)


def nordugrid_keys(raw: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """CondorARC keys that do what ``nordugridrsl.*`` did, and the parts that have no equivalent.

    ``nordugridrsl.queue`` -> arc_resources ``<QueueName>``; runtime environments of
    ``nordugridrsl.nordugridrsladd`` -> arc_rte; ``nordugridrsl.addenv.<NAME>`` -> pilot environment.
    """
    keys: dict[str, str] = {}
    left: list[str] = []
    attr = "batchsubmit.condorarc.condor_attributes."
    queue = raw.get("nordugridrsl.queue", "").strip()
    if queue:
        keys[attr + "arc_resources"] = f"<QueueName>{queue}</QueueName>"
    add = raw.get("nordugridrsl.nordugridrsladd", "")
    rtes = [rte.strip("'\" ") for rte in _RTE.findall(add)]
    if rtes:
        keys[attr + "arc_rte"] = ",".join(rtes)
    rest = _RTE.sub("", add).strip()
    if rest:
        left.append(f"nordugridrsl.nordugridrsladd {rest!r}")
    env = [f"{key[len('nordugridrsl.addenv.'):].upper()}={shlex.quote(value.strip())}"
           for key, value in raw.items() if key.startswith("nordugridrsl.addenv.")]
    if env:
        own = raw.get("batchsubmit.condorarc.environ", "")
        keys["batchsubmit.condorarc.environ"] = " ".join([own, *env]).strip()
    known = {"nordugridrsl.queue", "nordugridrsl.nordugridrsladd", "nordugridrsl.jobname", "nordugridrsl.nordugridrsl"}
    left += [key for key in raw if key.startswith("nordugridrsl.") and key not in known
             and not key.startswith("nordugridrsl.addenv.")]
    return keys, left
