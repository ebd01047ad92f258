"""Submit pilots through an HTCondor schedd: local (vanilla), HTCondor-CE, ARC and SSH (BOSCO).

One ``Schedd.submit(Submit, count=n)`` transaction per queue per cycle,
through the htcondor2 bindings, with a timeout. The four plugins share one
base and differ only in universe and grid resource.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from autopyfactory import commands
from autopyfactory.config import Key, split_list
from autopyfactory.interfaces import BatchSubmitPlugin, SubmitResult
from autopyfactory.paths import default_executable, wrapper_dir
from autopyfactory.plugins.batchstatus.condor import Condor as CondorStatus
from autopyfactory.plugins.batchstatus.condor import connect_schedd, quote


class SubmitDescriptionError(ValueError):
    """A configuration value that cannot go into a submit description."""


def submit_arguments(args: list[str]) -> str:
    """argv -> the submit language's new-syntax ``arguments`` (double-quoted, single quotes group).

    ``$`` becomes ``$(DOLLAR)`` so nothing from the config is expanded as a macro.
    """
    parts = []
    for arg in args:
        text = arg.replace('"', '""').replace("'", "''")
        if not text or any(c in text for c in " \t'"):
            text = f"'{text}'"
        parts.append(text)
    return '"' + " ".join(parts).replace("$", "$(DOLLAR)") + '"'


def submit_environment(env: dict[str, str]) -> str:
    """{VAR: value} -> the submit language's new-syntax ``environment``."""
    parts = []
    for name, value in env.items():
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise SubmitDescriptionError(f"bad environment variable name {name!r}")
        text = str(value).replace('"', '""').replace("'", "''")
        if not text or any(c in text for c in " \t'"):
            text = f"'{text}'"
        parts.append(f"{name}={text}")
    return '"' + " ".join(parts).replace("$", "$(DOLLAR)") + '"'


def parse_environ(text: str) -> dict[str, str]:
    """``batchsubmit.<plugin>.environ``: ``A=1 B='two words'`` (shell-like words, no shell)."""
    env = {}
    for word in shlex.split(text or ""):
        name, eq, value = word.partition("=")
        if not eq:
            raise SubmitDescriptionError(f"environ entry {word!r} is not NAME=value")
        env[name] = value
    return env


BASE_KEYS = {
    "condor_attributes": Key("str", "", help="extra submit commands, comma list of 'name = value' (\\, escapes)"),
    "condor_attributes.*": Key("str", "", help="one extra submit command: condor_attributes.<name> = value"),
    "environ": Key("str", "", help="extra pilot environment: NAME=value NAME2='two words'"),
    "proxy": Key("str", "", help="auth.conf profile; its credential becomes x509userproxy"),
    "timeout": Key("float", 60.0, min=1, help="seconds before the schedd call is given up"),
}


class CondorBase(BatchSubmitPlugin):
    """Shared by CondorLocal, CondorCE, CondorARC and CondorSSH (not a plugin itself)."""

    keys: dict[str, Key] = BASE_KEYS
    universe = "vanilla"
    connect = staticmethod(connect_schedd)

    # ------------------------------------------------------------ the description
    def grid_resource(self) -> str | None:
        return None

    def schedd_options(self) -> dict[str, Any]:
        """The schedd of this queue: its ``batchstatus.condor.*`` keys."""
        return self.queue.plugin_options(CondorStatus)

    @property
    def timeout(self) -> float:
        return self.options["timeout"]

    def proxy_path(self) -> str | None:
        profile = self.credential_profile
        if not profile:
            return None
        credentials = self.context.credentials
        state = credentials.status(profile) if credentials is not None else None
        if state is None or not state.ok or not state.path:
            raise SubmitDescriptionError(f"credential profile {profile} has no usable proxy file")
        return state.path

    def extra_commands(self) -> dict[str, str]:
        """condor_attributes (comma list) then condor_attributes.<name> keys."""
        commands_: dict[str, str] = {}
        for item in split_list(self.options["condor_attributes"]):
            name, eq, value = item.partition("=")
            if not eq or not name.strip():
                raise SubmitDescriptionError(f"condor_attributes item {item!r} is not 'name = value'")
            commands_[name.strip()] = value.strip()
        for key, value in self.options.items():
            if key.startswith("condor_attributes.") and key != "condor_attributes.*":
                commands_[key[len("condor_attributes."):]] = str(value)
        return commands_

    def description(self, logdir: str) -> dict[str, str]:
        """The submit description of this queue's pilots, as submit commands."""
        fid = self.context.factory_id
        queue = self.queue
        url = self.context.logurl(logdir)
        pilot = "$(Cluster).$(Process)"
        env = self.context.pilot_environment(queue, pilot, os.path.join(logdir, f"{pilot}.out"))
        env["GTAG"] = f"{url}/{pilot}.out"
        env["APFCID"] = pilot
        env["APF_WRAPPER_DIR"] = wrapper_dir()
        env.update(parse_environ(self.options["environ"]))
        arguments = shlex.split(queue.values.get("executable.arguments") or "")
        desc: dict[str, str] = {
            "universe": self.universe,
            "executable": queue.values.get("executable") or default_executable(),
            "arguments": submit_arguments(arguments),
            "output": os.path.join(logdir, f"{pilot}.out"),
            "error": os.path.join(logdir, f"{pilot}.err"),
            "log": os.path.join(logdir, "$(Cluster).log"),
            "should_transfer_files": "YES",
            "when_to_transfer_output": "ON_EXIT_OR_EVICT",
            "notification": "Never",
            "+MATCH_APF_QUEUE": quote(queue.name),
            "+APF_QUEUE": quote(queue.name),
            "+APF_WMSQUEUE": quote(queue.wmsqueue),
            "+APF_FACTORY": quote(fid),
            "+FACTORY_JOBID": quote(f"{fid}#{pilot}"),
            "+APF_OUTURL": quote(f"{url}/{pilot}.out"),
            "+APF_ERRURL": quote(f"{url}/{pilot}.err"),
            "+APF_LOGURL": quote(f"{url}/$(Cluster).log"),
        }
        desc["environment"] = submit_environment(env)
        resource = self.grid_resource()
        if resource:
            desc["grid_resource"] = resource
        proxy = self.proxy_path()
        if proxy:
            desc["x509userproxy"] = proxy
        desc.update(self.extra_commands())
        for name, value in desc.items():
            if "\n" in name or "\n" in value or "\r" in value:
                raise SubmitDescriptionError(f"submit command {name!r} has a line break in its value")
        return desc

    def submit_object(self, logdir: str) -> Any:
        import htcondor2

        return htcondor2.Submit(self.description(logdir))

    # ------------------------------------------------------------ submit / remove
    def _schedd(self) -> Any:
        return commands.call(self.connect, self.schedd_options(), timeout=self.timeout, what="connect to schedd")

    def submit(self, n: int) -> SubmitResult:
        if n <= 0:
            return SubmitResult(0)
        logdir = self.context.logdir(self.queue.name)
        try:
            sub = self.submit_object(logdir)
        except (SubmitDescriptionError, ValueError) as exc:
            return SubmitResult(0, error=f"bad submit description: {exc}")
        text = f"{sub}".rstrip()
        text = text[: -len("queue")].rstrip() if text.endswith("queue") else text
        try:
            schedd = self._schedd()
            result = commands.call(schedd.submit, sub, count=n, timeout=self.timeout, what="schedd submit")
            cluster = int(result.cluster())
            procs = int(result.num_procs())
        except Exception as exc:  # any bindings failure is a failed submission
            return SubmitResult(0, error=f"{self.name}: {type(exc).__name__}: {exc}")
        with open(os.path.join(logdir, f"{cluster}.jdl"), "w") as handle:
            handle.write(f"{text}\nqueue {n}\n")
        return SubmitResult(procs, [f"{cluster}.{proc}" for proc in range(procs)])

    def remove(self, n: int) -> SubmitResult:
        """Remove up to n idle pilots of this queue, newest first (the schedd re-checks JobStatus == 1)."""
        if n <= 0:
            return SubmitResult(0)
        import htcondor2

        fid, queue = self.context.factory_id, self.queue.name
        mine = f"APF_FACTORY =?= {quote(fid)} && APF_QUEUE =?= {quote(queue)} && JobStatus == 1"
        try:
            schedd = self._schedd()
            ads = commands.call(schedd.query, constraint=mine, projection=["ClusterId", "ProcId", "QDate"],
                                timeout=self.timeout, what="schedd query")
            chosen = sorted(ads, key=lambda a: (a.get("QDate") or 0, a.get("ClusterId") or 0,
                                                a.get("ProcId") or 0), reverse=True)[:n]
            if not chosen:
                return SubmitResult(0, message=f"{self.name}: no idle pilots to remove")
            ids = [f"{a.get('ClusterId')}.{a.get('ProcId')}" for a in chosen]
            which = " || ".join(f"(ClusterId == {a.get('ClusterId')} && ProcId == {a.get('ProcId')})"
                                for a in chosen)
            # JobStatus == 1 again inside the same action: a pilot that started meanwhile is left alone
            answer = commands.call(schedd.act, htcondor2.JobAction.Remove, f"JobStatus == 1 && ({which})",
                                   reason=f"AutoPyFactory {fid}: too many idle pilots in {queue}",
                                   timeout=self.timeout, what="schedd remove")
        except Exception as exc:
            return SubmitResult(0, error=f"{self.name} remove: {type(exc).__name__}: {exc}")
        removed = int(answer.get("TotalSuccess", len(ids))) if answer is not None else len(ids)
        return SubmitResult(removed, ids[:removed])


class CondorLocal(CondorBase):
    """Pilots in the vanilla universe of a local (or named) schedd.

    Keys (``batchsubmit.condorlocal.<key>``): ``condor_attributes`` (comma list
    of submit commands, ``\\,`` for a literal comma), ``condor_attributes.<name>``
    (one submit command each), ``environ`` (NAME=value ...), ``proxy``
    (auth.conf profile -> x509userproxy), ``timeout`` (60 s). The schedd is
    named by ``batchstatus.condor.scheddhost/scheddport/collectorhost/collectorport``.
    Pilots carry MATCH_APF_QUEUE, APF_QUEUE, APF_WMSQUEUE, APF_FACTORY,
    FACTORY_JOBID and APF_OUTURL/ERRURL/LOGURL; their environment has
    PANDA_JSID, GTAG, APFCID, APFFID, APFMON, FACTORYQUEUE, FACTORYUSER.
    The description used is saved as ``<baseLogDir>/<date>/<queue>/<cluster>.jdl``.
    """

    name = "CondorLocal"
    universe = "vanilla"


class CondorCE(CondorBase):
    """Pilots to an HTCondor-CE: grid universe, ``grid_resource = condor <ce> <ce>:9619``.

    Keys: those of CondorLocal plus ``gridresource`` (CE host, required;
    ``host:port`` for a CE collector on another port) and ``port`` (9619).
    """

    name = "CondorCE"
    universe = "grid"
    keys = {
        **BASE_KEYS,
        "gridresource": Key("str", "", required=True, help="CE host name"),
        "port": Key("int", 9619, min=1, max=65535, help="CE collector port"),
    }

    def grid_resource(self) -> str:
        host = self.options["gridresource"]
        if ":" in host:
            host, port = host.rsplit(":", 1)
        else:
            port = str(self.options["port"])
        return f"condor {host} {host}:{port}"


class CondorARC(CondorBase):
    """Pilots to an ARC CE (REST interface): ``grid_resource = arc https://<ce>:443/arex``.

    Keys: those of CondorLocal plus ``gridresource`` (CE host or full URL, required).
    """

    name = "CondorARC"
    universe = "grid"
    keys = {**BASE_KEYS, "gridresource": Key("str", "", required=True, help="ARC CE host or URL")}

    def grid_resource(self) -> str:
        target = self.options["gridresource"]
        if "://" not in target:
            target = f"https://{target}:443/arex"
        return f"arc {target}"


class CondorSSH(CondorBase):
    """Pilots to a remote batch system over SSH (BOSCO): ``grid_resource = batch <lrms> user@host``.

    Keys: those of CondorLocal plus ``batch`` (slurm | pbs | lsf | sge |
    condor), ``user`` and ``host`` (required; SSH port and keys come from
    the BOSCO/ssh configuration of the factory user).
    """

    name = "CondorSSH"
    universe = "grid"
    keys = {
        **BASE_KEYS,
        "batch": Key("str", "slurm", choices=("slurm", "pbs", "lsf", "sge", "condor")),
        "user": Key("str", "", required=True),
        "host": Key("str", "", required=True),
    }

    def grid_resource(self) -> str:
        o = self.options
        return f"batch {o['batch']} {o.get('user')}@{o.get('host')}"
