"""What every benchmark shares: the factory set-up, the machine description, results as JSON.

Benchmarks run from the repository root (``python -m bench.<name>``, or ``make bench``
for all of them). Each one prints its figures and, with ``--json FILE``, writes
them for ``bench.run`` to put in the table.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from autopyfactory.cli.daemon import setup_logging
from autopyfactory.config import FactoryConfig
from autopyfactory.factory import Factory, build_factory

REPO = Path(__file__).resolve().parent.parent


def factory_id(prefix: str = "bench") -> str:
    """A factory id of its own per run: pilots of other runs (or tests) are never counted as ours."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_config(root: Path, queues: str, factory_keys: dict[str, object], fid: str) -> Path:
    """factory.conf + queues.conf (+ empty auth/monitor/plugins.d) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "plugins.d").mkdir(exist_ok=True)
    (root / "queues.conf").write_text(queues)
    (root / "monitor.conf").write_text("")
    (root / "auth.conf").write_text("")
    keys = {
        "factoryId": fid,
        "queueConf": "queues.conf",
        "authConf": "auth.conf",
        "monitorConf": "monitor.conf",
        "baseLogDir": str(root / "logs"),
        "plugindirs": str(root / "plugins.d"),
        "logserver.enabled": "false",
        **factory_keys,
    }
    path = root / "factory.conf"
    path.write_text("[Factory]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    return path


def section(name: str, keys: dict[str, object]) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"


def make_factory(conf: Path) -> tuple[Factory, FactoryConfig]:
    factory = build_factory(str(conf))
    return factory, factory.config


@contextlib.contextmanager
def running_factory(conf: Path, cycles: int | None = None, log: Path | None = None,
                    stop_timeout: float = 10.0) -> Iterator[Factory]:
    """The factory of ``conf``, started (for ``cycles`` cycles, or for good) and stopped whatever happens.

    With ``log`` it logs there as the daemon does (see log_to).
    """
    with log_to(log) if log else contextlib.nullcontext():
        factory, _ = make_factory(conf)
        factory.start(cycles=cycles)
        try:
            yield factory
        finally:
            factory.stop(timeout=stop_timeout)


HOLD = "--hold"  # pilots on the test cluster are submitted held: the benchmarks measure acceptance, none runs


def held_on_slurm(slurmconf: str, partition: str) -> dict[str, object]:
    """The queue keys that send pilots to ``partition`` of the Slurm cluster, held, and read their status there."""
    return {
        "batchstatusplugin": "Slurm",
        "batchstatus.slurm.slurmconf": slurmconf,
        "batchsubmitplugin": "Slurm",
        "batchsubmit.slurm.slurmconf": slurmconf,
        "batchsubmit.slurm.extraargs": HOLD,
        "batchqueue": partition,
    }


def job_ids(pilots: Iterable[str]) -> list[str]:
    """The Slurm jobs (job arrays) of these pilot ids (``JOB_TASK``), sorted."""
    return sorted({pilot.split("_")[0] for pilot in pilots})


def cancel(ids: list[str]) -> None:
    """scancel these Slurm jobs, 200 at a time."""
    for first in range(0, len(ids), 200):
        subprocess.run(["scancel", *ids[first:first + 200]], capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Log as the daemon does (a file, level info): the cost of a cycle includes its log line.

    The logging set-up of the caller (e.g. pytest's) is put back afterwards.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    handler = setup_logging(str(path), "info")
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        handler.close()


def quiet() -> None:
    logging.getLogger().handlers[:] = [logging.NullHandler()]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def peak_rss_mb() -> float:
    """VmHWM of this process (peak resident set), MB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_seconds() -> float:
    """CPU time of this process and of the children it has waited for (user + system)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def rusage() -> dict[str, float]:
    """User and system CPU, voluntary and involuntary context switches of this process so far."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"user": own.ru_utime, "sys": own.ru_stime, "vcsw": own.ru_nvcsw, "ivcsw": own.ru_nivcsw}


def _command(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "?"


def machine() -> dict[str, str]:
    """Date (UTC), CPUs, memory, Python and Slurm versions: the header of every table."""
    memory = "?"
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "date": _command(["date", "-u"]),
        "nproc": _command(["nproc"]),
        "memory": memory,
        "python": platform.python_version(),
        "slurm": _command(["slurmd", "-V"]),
        "kernel": platform.release(),
        "commit": _command(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
    }


def emit(results: dict, json_path: str | None) -> None:
    """Print the results; write them to ``json_path`` for bench.run."""
    text = json.dumps(results, indent=2, sort_keys=True)
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n")


def threads() -> int:
    return threading.active_count()


def thread_kind(name: str) -> str:
    """The kind of a daemon thread by its name: a cycle worker (``cycles-N``, ``queue:<name>`` while in a
    cycle), a status poller (``batchstatus:<endpoint>``), the store, the web server, the main loop..."""
    if name.startswith(("cycles-", "queue:")):
        return "cycle workers"
    for sep in (":", "-"):
        if sep in name:
            return name.split(sep, 1)[0]
    return name


def cpu_by_thread_kind() -> dict[str, float]:
    """CPU seconds (user + system) of this process's live threads so far, summed by ``thread_kind``
    (Linux /proc; {} elsewhere). Threads are matched by their native id, named as they are now."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for tid, name in names.items():
        try:
            with open(f"/proc/self/task/{tid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = thread_kind(name)
        found[kind] = found.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def dedent(text: str) -> str:
    return textwrap.dedent(text)


def python() -> str:
    return sys.executable


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}
