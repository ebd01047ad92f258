"""Submit pilots to Slurm: one ``sbatch --array=0-(n-1)`` per queue per cycle."""

from __future__ import annotations

import functools
import os
import shlex
import time

from autopyfactory import commands
from autopyfactory.config import Key
from autopyfactory.credentials import PILOT_VARIABLES
from autopyfactory.interfaces import BatchSubmitPlugin, SubmitResult
from autopyfactory.paths import SLURM_LAUNCHER, default_executable, wrapper_dir
from autopyfactory.plugins.batchstatus.slurm import (
    SQUEUE_FORMAT,
    parse_squeue,
    pilot_tag,
    squeue_env,
)
from autopyfactory.redact import redact


# The batch script of every Slurm pilot is the launcher shipped with the package
# (wrappers/apf-slurm-launcher.sh): constant text, every value (the executable, its
# arguments, the log URL) arrives through argv or the environment, so nothing from the
# configuration is ever parsed by a shell. sbatch sends the script's text to slurmctld
# at submit time, so every queue submits the same read-only file and the submit path
# writes nothing before sbatch; the node runs a copy, hence APF_WRAPPER_DIR in the
# environment. Read once per process (its text goes into each <arrayjob>.sbatch).
@functools.cache  # a failure raises and is not cached: the next call reads again
def launcher() -> tuple[str, str]:
    """(path, text) of the shipped Slurm launcher; ValueError saying why when it cannot be used."""
    path = SLURM_LAUNCHER
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"the Slurm launcher shipped with autopyfactory cannot be read: {path}: {why} "
                         "(reinstall autopyfactory)") from None
    if not text.startswith("#!"):
        raise ValueError(f"the Slurm launcher shipped with autopyfactory is not a batch script "
                         f"(no #! line): {path} (reinstall autopyfactory)")
    return path, text


class Slurm(BatchSubmitPlugin):
    """Submits a queue's pilots as one Slurm job array per cycle.

    Keys (``batchsubmit.slurm.<key>``): ``partition`` (default: the queue's
    ``batchqueue``; neither set: the cluster's default partition), ``time`` (--time), ``mem`` (--mem), ``cpus``
    (--cpus-per-task), ``account``, ``qos``, ``extraargs`` (more sbatch
    options, split like a shell would, no shell involved), ``sbatch`` /
    ``squeue`` / ``scontrol`` / ``scancel`` (command names or paths),
    ``slurmconf`` (the cluster's slurm.conf), ``timeout`` (60 s per command),
    ``maxarray`` (1000: larger n is capped, Slurm's MaxArraySize),
    ``proxy`` (auth.conf profile that must be valid to submit; its file is
    handed to the pilots as X509_USER_PROXY or BEARER_TOKEN_FILE, by type).

    Each pilot runs ``executable`` (default: the shipped apf-wrapper.sh) with
    ``executable.arguments``; job name ``apf.<factoryId>.<queue>`` and comment
    ``apf:<factoryId>:<wmsqueue>:<queue>`` attribute it. Output:
    ``<baseLogDir>/<date>/<queue>/<arrayjob>.<task>.out|err``; the submit
    description used (argv, environment, batch script) is saved beside them as
    ``<arrayjob>.sbatch``. Removal holds, re-checks and cancels only pending
    array tasks of this queue, newest first; a running pilot is never touched.
    """

    name = "Slurm"
    keys = {
        "partition": Key("str", "", help="Slurm partition (default: batchqueue)"),
        "time": Key("str", "", help="sbatch --time"),
        "mem": Key("str", "", help="sbatch --mem"),
        "cpus": Key("int", None, min=1, help="sbatch --cpus-per-task"),
        "account": Key("str", "", help="sbatch --account"),
        "qos": Key("str", "", help="sbatch --qos"),
        "extraargs": Key("str", "", help="more sbatch options"),
        "sbatch": Key("str", "sbatch"),
        "squeue": Key("str", "squeue"),
        "scontrol": Key("str", "scontrol"),
        "scancel": Key("str", "scancel"),
        "slurmconf": Key("path", "", help="slurm.conf of the cluster (sets SLURM_CONF)"),
        "timeout": Key("float", 60.0, min=1),
        "maxarray": Key("int", 1000, min=1, help="most pilots in one job array"),
        "proxy": Key("str", "", help="auth.conf profile required to submit"),
    }
    runner: commands.Runner = staticmethod(commands.run)

    @classmethod
    def missing(cls) -> list[str]:
        """Also the shipped launcher: a queue that cannot submit is refused when the config is read."""
        problems = super().missing()
        try:
            launcher()
        except ValueError as exc:
            problems.append(str(exc))
        return problems

    # ------------------------------------------------------------ helpers
    @property
    def timeout(self) -> float:
        return self.options["timeout"]

    @property
    def partition(self) -> str:
        """``partition`` key, else the queue's ``batchqueue``; empty: the cluster's default partition."""
        return self.options.get("partition") or self.queue.values.get("batchqueue") or ""

    @property
    def job_name(self) -> str:
        return f"apf.{self.context.factory_id}.{self.queue.name}"

    @property
    def tag(self) -> str:
        return pilot_tag(self.context.factory_id, self.queue.wmsqueue, self.queue.name)

    def _run(self, argv: list[str], env: dict[str, str | None] | None = None) -> commands.CommandResult:
        return self.runner(argv, timeout=self.timeout, env={**(env or {}), **squeue_env(self.options)})

    def sbatch_argv(self, n: int, logdir: str, launcher: str) -> list[str]:
        """The sbatch command line of one cycle (raises ValueError on unsplittable arguments)."""
        o = self.options
        argv = [
            o["sbatch"], "--parsable", f"--array=0-{n - 1}",
            f"--job-name={self.job_name}", f"--comment={self.tag}",
            f"--output={os.path.join(logdir, '%A.%a.out')}", f"--error={os.path.join(logdir, '%A.%a.err')}",
            f"--chdir={logdir}", "--export=ALL", "--no-requeue",
        ]
        if self.partition:
            argv.append(f"--partition={self.partition}")
        for key, flag in (("time", "--time"), ("mem", "--mem"), ("account", "--account"), ("qos", "--qos")):
            if o.get(key):
                argv.append(f"{flag}={o[key]}")
        if o.get("cpus"):
            argv.append(f"--cpus-per-task={o['cpus']}")
        argv.extend(shlex.split(o["extraargs"]))
        argv.append(launcher)
        argv.extend(shlex.split(self.queue.values.get("executable.arguments") or ""))
        return argv

    def environment(self, logdir: str) -> dict[str, str | None]:
        """What every pilot of this queue gets (APFCID/GTAG are set per task by the launcher; None: unset)."""
        env = self.context.pilot_environment(self.queue, "", os.path.join(logdir, "%A.%a.out"))
        env.pop("APFCID", None)
        env.pop("GTAG", None)
        env.update({
            "APF_EXECUTABLE": self.queue.values.get("executable") or default_executable(),
            "APF_WRAPPER_DIR": wrapper_dir(),
            "APF_GTAG_BASE": self.context.logurl(logdir),
        })
        # only this queue's credential reaches its pilots, never one the factory happens to have
        env.update({variable: None for variable in PILOT_VARIABLES.values()})
        credential = self.credential()
        if credential is not None and credential[0] in PILOT_VARIABLES:
            env[PILOT_VARIABLES[credential[0]]] = credential[1]
        env.update(self.context.wms_environment(self.queue))
        return env

    @staticmethod
    def _describe(argv: list[str], env: dict[str, str], extra: str = "") -> str:
        path, text = launcher()
        lines = ["# sbatch command line (argv, no shell)", shlex.join(argv), "",
                 "# environment added for the pilots (exported with --export=ALL)"]
        lines += [f"{k}={v}" if v is not None else f"unset {k}" for k, v in sorted(env.items())]
        lines += ["", f"# batch script (the launcher, {path})", text]
        if extra:
            lines += ["# result", extra]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ submit
    def prepare(self, when: float) -> None:
        """The log directory of a submission at ``when``, made before the cycle needs it."""
        self.context.logdir(self.queue.name, when)

    def submit(self, n: int) -> SubmitResult:
        """One ``sbatch --array``; its description is saved beside the logs once sbatch has answered.

        Nothing but building the command line comes before sbatch: the batch script is the
        shipped launcher (read once per process, no file is written for it), and the day's log
        directory is only checked (made here when ``prepare`` has not). Writing and redacting
        the description cost as much as a fifth of sbatch's own time: it is written afterwards,
        as ``<arrayjob>.sbatch`` or ``failed-*.sbatch``; a failed write is a message, never a
        lost count (Slurm has the pilots by then).
        """
        if n <= 0:
            return SubmitResult(0)
        note = ""
        maximum = self.options["maxarray"]
        if n > maximum:
            note = f"Slurm: {n} capped to {maximum} (batchsubmit.slurm.maxarray)"
            n = maximum
        try:
            script = launcher()[0]
        except ValueError as exc:
            return SubmitResult(0, message=note, error=str(exc))
        logdir = self.context.logdir(self.queue.name)
        try:
            argv = self.sbatch_argv(n, logdir, script)
        except ValueError as exc:
            return SubmitResult(0, message=note, error=f"cannot split extraargs/executable.arguments: {exc}")
        try:
            env = self.environment(logdir)
        except ValueError as exc:
            return SubmitResult(0, message=note, error=str(exc))
        result = self._run(argv, env)
        accepted = time.time()
        jobid = result.stdout.strip().split(";", 1)[0] if result.ok else ""
        if not result.ok or not jobid.isdigit():
            why = result.describe() if not result.ok else (
                f"sbatch: unexpected output {result.stdout.strip()[:200]!r} "
                f"(expected a job id){': ' + result.stderr.strip()[:300] if result.stderr.strip() else ''}")
            stamp = time.strftime("%H%M%S", time.gmtime()) + f"-{os.getpid()}-{time.monotonic_ns() % 10**6}"
            written = self._save(logdir, f"failed-{stamp}.sbatch", argv, env, f"# failed: {why}")
            return SubmitResult(0, message="; ".join(filter(None, [note, written])), error=why)
        prefix = f"{jobid}_"
        ids = [prefix + str(task) for task in range(n)]
        written = self._save(logdir, f"{jobid}.sbatch", argv, env, f"# submitted: job array {jobid}, tasks 0-{n - 1}")
        return SubmitResult(n, ids, message="; ".join(filter(None, [note, written])), accepted_at=accepted)

    def _save(self, logdir: str, name: str, argv: list[str], env: dict[str, str | None], outcome: str) -> str:
        """Write a submission's description (redacted: it is served under /logs/); '' or why it was not."""
        try:
            with open(os.path.join(logdir, name), "w") as handle:
                handle.write(redact(self._describe(argv, env, outcome)))
        except OSError as exc:
            return f"Slurm: {name} not written ({exc})"
        return ""

    # ------------------------------------------------------------ remove
    def _pending_ids(self, jobs: list[str] | None = None) -> tuple[list[tuple[float, int, str]], str | None]:
        """This queue's pending pilots as (submit time, task, id), or an error."""
        argv = [self.options["squeue"], "-h", "-r", "-t", "PENDING", "-O", SQUEUE_FORMAT]
        if jobs:
            argv += ["-j", ",".join(jobs)]
        elif "," not in self.job_name:  # -n takes a comma list; the tag check below is what counts
            argv += ["-n", self.job_name]
        result = self._run(argv)
        if not result.ok:
            if jobs and "Invalid job id" in result.stderr:
                return [], None  # all gone meanwhile
            return [], result.describe()
        found: list[tuple[float, int, str]] = []
        try:
            for line in parse_squeue(result.stdout):
                mine = (line.factory, line.queue) == (self.context.factory_id, self.queue.name)
                if not mine or line.state != "PENDING":
                    continue
                for jobid in line.ids:
                    task = jobid.rpartition("_")[2]
                    found.append((line.submit or 0.0, int(task) if task.isdigit() else 0, jobid))
        except ValueError as exc:
            return [], f"squeue: {exc}"
        return found, None

    def remove(self, n: int) -> SubmitResult:
        """Cancel up to n pending pilots of this queue, newest first; never a running one.

        Slurm can start a task between any two commands, so the chosen tasks
        are first held (a held task cannot start; holding a running one does
        not stop it), then checked again, and only those still pending are
        cancelled. Any left held by a failure are released.
        """
        if n <= 0:
            return SubmitResult(0)
        pending, error = self._pending_ids()
        if error:
            return SubmitResult(0, error=error)
        chosen = [jobid for _, _, jobid in sorted(pending, reverse=True)[:n]]
        if not chosen:
            return SubmitResult(0, message="Slurm: no pending pilots to remove")
        scontrol = self.options["scontrol"]
        hold = self._run([scontrol, "hold", *chosen])
        if not hold.ok and "Invalid job id" not in hold.stderr:
            return SubmitResult(0, error=hold.describe())
        still, error = self._pending_ids(chosen)
        ids = [jobid for _, _, jobid in still if jobid in set(chosen)]
        if error:
            self._run([scontrol, "release", *chosen])
            return SubmitResult(0, error=error)
        if ids:
            cancel = self._run([self.options["scancel"], *ids])
            if not cancel.ok:
                self._run([scontrol, "release", *chosen])
                return SubmitResult(0, error=cancel.describe())
        started = [j for j in chosen if j not in set(ids)]
        if started:
            self._run([scontrol, "release", *started])  # started meanwhile: undo the hold's priority 0
        return SubmitResult(len(ids), ids)
