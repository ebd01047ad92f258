"""Submit pilots through an HTCondor schedd: local (vanilla), HTCondor-CE, ARC and SSH (BOSCO).

One ``Schedd.submit(Submit, count=n)`` transaction per queue per cycle,
through the htcondor2 bindings, with a timeout. The four plugins share one
base and differ only in universe and grid resource.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any

from autopyfactory import commands
from autopyfactory.config import Key, split_list
from autopyfactory.interfaces import BatchSubmitPlugin, SubmitResult
from autopyfactory.paths import default_executable, wrapper_stage
from autopyfactory.plugins.batchstatus.condor import CONDOR_REQUIRES, connect_schedd, quote
from autopyfactory.plugins.batchstatus.condor import Condor as CondorStatus
from autopyfactory.redact import redact


class SubmitDescriptionError(ValueError):
    """A configuration value that cannot go into a submit description."""


# Our own macros, the only ones a description may use: until the description
# is written they are these marks, so that every other character is literal.
CLUSTER, PROCESS = "\ue000Cluster\ue000", "\ue000Process\ue000"  # private-use characters
PILOT = f"{CLUSTER}.{PROCESS}"
COMMAND_NAME = re.compile(r"\+?[A-Za-z_][A-Za-z0-9_.]*")
DOLLAR_MACRO = re.compile(r"\$\(dollar\)", re.IGNORECASE)


def submit_value(command: str, text: str) -> str:
    """``text`` as a value of the submit language that HTCondor reads back literally.

    HTCondor expands ``$(...)``, ``$ENV(...)``, ``$INT(...)``... when it reads a
    description and ``$$(...)`` when a pilot is matched; a literal ``$`` is
    written ``$(DOLLAR)``. What the macro language cannot give back literally
    is refused: ``$$``, the text ``$(DOLLAR)`` itself, a line break, a
    trailing backslash (a line continuation) and space at either end.
    """
    plain = text.replace(CLUSTER, "").replace(PROCESS, "")
    problem = ("a line break" if any(c in plain for c in "\r\n\0") else
               "a character reserved by AutoPyFactory (U+E000)" if "\ue000" in plain else
               "'$$' (HTCondor expands $$(...) when a pilot is matched)" if "$$" in text else
               "'$(DOLLAR)'" if DOLLAR_MACRO.search(text) else
               "a trailing backslash" if text.endswith("\\") else
               "leading or trailing space (the parser drops it)" if text != text.strip() else "")
    if problem:
        raise SubmitDescriptionError(f"submit command {command}: the value {plain!r} has {problem}")
    return text.replace("$", "$(DOLLAR)").replace(CLUSTER, "$(Cluster)").replace(PROCESS, "$(Process)")


def classad_string(text: str) -> str:
    """A ClassAd string literal of ``text``; CLUSTER/PROCESS marks stay marks (they become digits)."""
    pieces = re.split(f"({CLUSTER}|{PROCESS})", text)
    return '"' + "".join(p if p in (CLUSTER, PROCESS) else quote(p)[1:-1] for p in pieces) + '"'


def _word(text: str) -> str:
    """One word of the new-syntax ``arguments``/``environment`` (single quotes group, quotes doubled)."""
    text = text.replace('"', '""').replace("'", "''")
    return f"'{text}'" if not text or any(c in text for c in " \t'") else text


def submit_arguments(args: list[str]) -> str:
    """argv -> ``arguments`` text (literal; :func:`submit_value` writes it)."""
    return '"' + " ".join(_word(arg) for arg in args) + '"'


def submit_environment(env: dict[str, str]) -> str:
    """{VAR: value} -> ``environment`` text (literal; :func:`submit_value` writes it)."""
    for name in env:
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise SubmitDescriptionError(f"bad environment variable name {name!r}")
    return '"' + " ".join(f"{name}={_word(str(value))}" for name, value in env.items()) + '"'


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
    "proxy": Key("str", "", help="auth.conf profile handed to the pilots (X.509 proxy or token)"),
    "timeout": Key("float", 60.0, min=1, help="seconds before the schedd call is given up"),
}


class CondorBase(BatchSubmitPlugin):
    """Shared by CondorLocal, CondorCE, CondorARC and CondorSSH (not a plugin itself)."""

    keys: dict[str, Key] = BASE_KEYS
    requires = CONDOR_REQUIRES
    universe = "vanilla"
    token_authenticates = False  # the grid resource takes a token (scitokens_file)

    # ------------------------------------------------------------ the description
    def grid_resource(self) -> str | None:
        return None

    def schedd_options(self) -> dict[str, Any]:
        """The schedd of this queue: its ``batchstatus.condor.*`` keys."""
        return self.queue.plugin_options(CondorStatus)

    @property
    def timeout(self) -> float:
        return self.options["timeout"]

    def credential_commands(self) -> tuple[dict[str, str], dict[str, str]]:
        """(submit commands, pilot environment) that hand this queue's credential to its pilots.

        X.509: ``x509userproxy`` (HTCondor sends it along and sets X509_USER_PROXY).
        Token: the file travels with the pilot (``transfer_input_files``) and
        BEARER_TOKEN_FILE names it in the pilot's starting directory; a CE or ARC
        is also authenticated to with it (``scitokens_file``). SSH keys never reach pilots.
        """
        credential = self.credential()
        if credential is None or credential[0] == "ssh":
            return {}, {}
        kind, path = credential
        if kind == "x509":
            return {"x509userproxy": path}, {}
        commands_ = {"transfer_input_files": path}
        if self.token_authenticates:
            commands_["scitokens_file"] = path
        return commands_, {"BEARER_TOKEN_FILE": os.path.basename(path)}

    def extra_commands(self) -> dict[str, str]:
        """condor_attributes (comma list) then condor_attributes.<name> keys."""
        commands_: dict[str, str] = {}
        for item in split_list(self.options["condor_attributes"]):
            name, eq, value = item.partition("=")
            if not eq:
                raise SubmitDescriptionError(f"condor_attributes item {item!r} is not 'name = value'")
            commands_[name.strip()] = value.strip()
        for key, value in self.options.items():
            if key.startswith("condor_attributes.") and key != "condor_attributes.*":
                commands_[key[len("condor_attributes."):]] = str(value)
        for name in commands_:
            if not COMMAND_NAME.fullmatch(name):
                raise SubmitDescriptionError(f"condor_attributes: {name!r} is not a submit command name")
        return commands_

    def description(self, logdir: str) -> dict[str, str]:
        """The submit description of this queue's pilots, as submit commands.

        Every value is literal text (config values included, condor_attributes
        too): :func:`submit_value` writes it so that no HTCondor macro expands.
        """
        fid = self.context.factory_id
        queue = self.queue
        url = self.context.logurl(logdir)
        credential, credential_env = self.credential_commands()
        env = self.context.pilot_environment(queue, PILOT, os.path.join(logdir, f"{PILOT}.out"))
        env["GTAG"] = f"{url}/{PILOT}.out"
        env["APFCID"] = PILOT
        stage = wrapper_stage()  # travels with the pilot: a worker node has none of this host's files
        env["APF_WRAPPER_PLUGIN_FILES"] = ":".join(os.path.basename(path) for path in stage[1:])
        env.update(credential_env)
        env.update(parse_environ(self.options["environ"]))
        arguments = shlex.split(queue.values.get("executable.arguments") or "")
        desc: dict[str, str] = {
            "universe": self.universe,
            "executable": queue.values.get("executable") or default_executable(),
            "arguments": submit_arguments(arguments),
            "output": os.path.join(logdir, f"{PILOT}.out"),
            "error": os.path.join(logdir, f"{PILOT}.err"),
            "log": os.path.join(logdir, f"{CLUSTER}.log"),
            "should_transfer_files": "YES",
            "when_to_transfer_output": "ON_EXIT_OR_EVICT",
            "notification": "Never",
            "+MATCH_APF_QUEUE": classad_string(queue.name),
            "+APF_QUEUE": classad_string(queue.name),
            "+APF_WMSQUEUE": classad_string(queue.wmsqueue),
            "+APF_FACTORY": classad_string(fid),
            "+FACTORY_JOBID": classad_string(f"{fid}#{PILOT}"),
            "+APF_OUTURL": classad_string(f"{url}/{PILOT}.out"),
            "+APF_ERRURL": classad_string(f"{url}/{PILOT}.err"),
            "+APF_LOGURL": classad_string(f"{url}/{CLUSTER}.log"),
            "environment": submit_environment(env),
        }
        resource = self.grid_resource()
        if resource:
            desc["grid_resource"] = resource
        extra = self.extra_commands()
        transfer = [*split_list(extra.pop("transfer_input_files", "")), *stage,
                    *split_list(credential.pop("transfer_input_files", ""))]
        for path in transfer:
            if "," in path:
                raise SubmitDescriptionError(f"file {path!r} has a comma (transfer_input_files is a comma list)")
        desc["transfer_input_files"] = ", ".join(transfer)
        desc.update(credential)
        desc.update(extra)
        return {name: submit_value(name, value) for name, value in desc.items()}

    def submit_object(self, logdir: str) -> Any:
        import htcondor2

        return htcondor2.Submit(self.description(logdir))

    # ------------------------------------------------------------ submit / remove
    def _schedd(self) -> Any:
        return commands.call(connect_schedd, self.schedd_options(), timeout=self.timeout, what="connect to schedd")

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
            handle.write(redact(f"{text}\nqueue {n}\n"))  # a record served under /logs/: no secret in it
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
    (auth.conf profile handed to the pilots: X.509 proxy as
    x509userproxy, token as BEARER_TOKEN_FILE; see docs/operations.md), ``timeout`` (60 s). The schedd is
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
    token_authenticates = True
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
    token_authenticates = True
    keys = {**BASE_KEYS, "gridresource": Key("str", "", required=True, help="ARC CE host or URL")}

    def grid_resource(self) -> str:
        target = self.options["gridresource"]
        if "://" not in target:
            target = f"https://{target}:443/arex"
        return f"arc {target}"


class CondorSSH(CondorBase):
    """Pilots to a remote batch system over SSH (BOSCO): ``grid_resource = batch <lrms> user@host``.

    Keys: those of CondorLocal plus ``batch`` (slurm | pbs | lsf | sge |
    condor), ``user`` and ``host`` (required), ``port`` (22: the SSH port,
    ``user@host:port`` when another), ``authprofile`` (an SSH profile of
    auth.conf: its ``ssh.privatekey`` and ``ssh.passwordfile`` are handed to
    HTCondor's remote GAHP as ``--rgahp-key`` and ``--rgahp-pass``; without
    it, the BOSCO/ssh configuration of the factory user logs in).
    """

    name = "CondorSSH"
    universe = "grid"
    keys = {
        **BASE_KEYS,
        "batch": Key("str", "slurm", choices=("slurm", "pbs", "lsf", "sge", "condor")),
        "user": Key("str", "", required=True),
        "host": Key("str", "", required=True),
        "port": Key("int", 22, min=1, max=65535, help="the SSH port of host"),
        "authprofile": Key("str", "", help="auth.conf SSH profile whose key logs in"),
    }

    def grid_resource(self) -> str:
        o = self.options
        target = f"{o.get('user')}@{o.get('host')}" + (f":{o['port']}" if o["port"] != 22 else "")
        resource = f"batch {o['batch']} {target}"
        profile = self.context.config.auth.get(o["authprofile"]) if o["authprofile"] else None
        if profile is not None:
            key, password = profile.values.get("ssh.privatekey"), profile.values.get("ssh.passwordfile")
            resource += (f" --rgahp-key {key}" if key else "") + (f" --rgahp-pass {password}" if password else "")
        return resource
