"""A real single-node Slurm cluster on 127.0.0.1 for tests and benchmarks.

Usage, from a test (the ``slurm`` session fixture, registered in conftest)::

    def test_something(slurm):
        slurm.env            # {"SLURM_CONF": ...}: pass to commands, or rely on os.environ
        slurm.partition      # "apf"

from a bench script (run from the repository root)::

    from tests.slurmcluster import slurm_cluster
    with slurm_cluster() as cluster:
        ...                  # SLURM_CONF is set in os.environ while inside

Everything lives in one directory (``$APF_SLURM_DIR``, default
``/tmp/apf-slurm``): slurm.conf, a munge key and munged socket of its own,
controller state, spool and logs. Ports are Slurm's fixed 6817/6818, so there
is one such cluster per machine: ``slurm_cluster()`` reuses a cluster that
answers ``scontrol ping``, starts one otherwise, and registers the calling
process as a user. When the last user leaves, a cluster that this module
started is stopped (munged, slurmd, slurmctld, by their pid files); a
cluster it did not start is never stopped. Daemons run as root, without
cgroups (proctrack/linuxproc, task/none), jobs oversubscribe the cores.
Needs Debian's ``slurm-wlm`` and ``munge`` (tests/services/slurm.sh).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from autopyfactory.commands import pid_exists
from tests.waiting import wait_for

DEFAULT_DIR = "/tmp/apf-slurm"
PARTITION = "apf"
START_TIMEOUT = 90.0


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def node_resources() -> tuple[int, int]:
    """(CPUs, RealMemory MB) as ``slurmd -C`` sees this machine."""
    cpus, memory = os.cpu_count() or 1, 1024
    try:
        answer = _run(["slurmd", "-C"], timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return cpus, memory
    for word in answer.split():
        key, _, value = word.partition("=")
        if key == "CPUs" and value.isdigit():
            cpus = int(value)
        elif key == "RealMemory" and value.isdigit():
            memory = int(value)
    return cpus, memory


@dataclass
class SlurmCluster:
    """One single-node cluster whose files live in ``directory``."""

    directory: str = field(default_factory=lambda: os.environ.get("APF_SLURM_DIR", DEFAULT_DIR))
    partition: str = PARTITION
    nodename: str = field(default_factory=lambda: socket.gethostname().split(".")[0])

    # -- paths
    def path(self, *parts: str) -> str:
        return os.path.join(self.directory, *parts)

    @property
    def conf(self) -> str:
        return self.path("slurm.conf")

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": self.conf}

    @property
    def started_here(self) -> bool:
        """True when this module started the running daemons (so it may stop them)."""
        return os.path.exists(self.path("started-by-apf-tests"))

    # -- queries
    def ping(self) -> bool:
        """True if slurmctld answers and the node takes jobs."""
        if not os.path.exists(self.conf):
            return False
        try:
            answer = _run(["scontrol", "ping"], self.env, timeout=15)
            if answer.returncode != 0 or "UP" not in answer.stdout:
                return False
            nodes = _run(["sinfo", "-h", "-N", "-o", "%T"], self.env, timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            return False
        states = nodes.stdout.split()
        return nodes.returncode == 0 and any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing")
                                             for s in states)

    def wait_up(self, timeout: float = START_TIMEOUT) -> None:
        def up() -> bool:
            if self.ping():
                return True
            self._resume_node()
            return False

        wait_for(up, f"the Slurm cluster in {self.directory} to come up (see {self.path('slurmctld.log')} "
                     f"and {self.path('slurmd.log')})", timeout=timeout, every=0.5)

    def _resume_node(self) -> None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            _run(["scontrol", "update", f"nodename={self.nodename}", "state=resume"], self.env, timeout=10)

    # -- set-up
    def write_config(self) -> None:
        for sub in ("state", "spool", "munge", "users"):
            os.makedirs(self.path(sub), exist_ok=True)
        os.chmod(self.directory, 0o755)
        os.chmod(self.path("munge"), 0o700)
        cpus, memory = node_resources()
        text = f"""\
# Written by tests/slurmcluster.py: a single-node test cluster on 127.0.0.1.
ClusterName=apftest
SlurmctldHost={self.nodename}(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.path('munge', 'munge.socket')}
CredType=cred/munge
StateSaveLocation={self.path('state')}
SlurmdSpoolDir={self.path('spool')}
SlurmctldPidFile={self.path('slurmctld.pid')}
SlurmdPidFile={self.path('slurmd.pid')}
SlurmctldLogFile={self.path('slurmctld.log')}
SlurmdLogFile={self.path('slurmd.log')}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=defer_batch
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=300
MaxArraySize=10001
MaxJobCount=100000
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName={self.nodename} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName={self.partition} Nodes={self.nodename} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:16
"""
        with open(self.conf, "w") as handle:
            handle.write(text)
        key = self.path("munge", "munge.key")
        if not os.path.exists(key):
            with open(key, "wb") as handle:
                handle.write(os.urandom(128))
            os.chmod(key, 0o600)

    def start_munge(self) -> None:
        if (pid := _read_pid(self.path("munge", "munged.pid"))) and pid_exists(pid):
            return
        answer = _run(["munged", "--force", f"--socket={self.path('munge', 'munge.socket')}",
                       f"--key-file={self.path('munge', 'munge.key')}",
                       f"--pid-file={self.path('munge', 'munged.pid')}",
                       f"--log-file={self.path('munge', 'munged.log')}",
                       f"--seed-file={self.path('munge', 'munged.seed')}"])
        if answer.returncode != 0:
            raise RuntimeError(f"munged failed: {answer.stderr.strip()}")

    def start_slurmd(self) -> None:
        if (pid := _read_pid(self.path("slurmd.pid"))) and pid_exists(pid):
            return
        answer = _run(["slurmd", "-f", self.conf, "-N", self.nodename], self.env)
        if answer.returncode != 0:
            raise RuntimeError(f"slurmd failed: {answer.stderr.strip()}")

    def start_controller(self) -> None:
        """Start slurmctld (it recovers its jobs from the state directory)."""
        if (pid := _read_pid(self.path("slurmctld.pid"))) and pid_exists(pid):
            return
        answer = _run(["slurmctld", "-f", self.conf], self.env)
        if answer.returncode != 0:
            raise RuntimeError(f"slurmctld failed: {answer.stderr.strip()}")

    def stop_controller(self, timeout: float = 30.0) -> None:
        """Stop slurmctld only (tests of an unreachable controller)."""
        self._kill(self.path("slurmctld.pid"), timeout)

    def start(self) -> None:
        self.write_config()
        with open(self.path("started-by-apf-tests"), "w") as handle:
            handle.write(f"{os.getpid()} {time.time():.0f}\n")
        self.start_munge()
        self.start_controller()
        self.start_slurmd()
        self.wait_up()

    def stop(self) -> None:
        """Stop the daemons this module started (by pid file, one at a time)."""
        if not self.started_here:
            return
        # jobs first, so no pilot outlives the cluster
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            _run(["scancel", "--full", "--quiet", f"--partition={self.partition}"], self.env, timeout=15)
        for name in ("slurmd.pid", "slurmctld.pid", os.path.join("munge", "munged.pid")):
            self._kill(self.path(name), 30.0)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path("started-by-apf-tests"))
        shutil.rmtree(self.path("state"), ignore_errors=True)
        shutil.rmtree(self.path("spool"), ignore_errors=True)

    @staticmethod
    def _kill(pidfile: str, timeout: float) -> None:
        pid = _read_pid(pidfile)
        if pid is None or not pid_exists(pid):
            return
        os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(AssertionError):  # still alive: killed below
            wait_for(lambda: not pid_exists(pid), f"pid {pid} to stop", timeout=timeout, every=0.2)
        if pid_exists(pid):
            os.kill(pid, signal.SIGKILL)

    # -- users: the last one out stops a cluster this module started
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.directory, exist_ok=True)
        with open(self.path(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _users(self) -> list[int]:
        directory = self.path("users")
        alive = []
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            pid = name.split(".")[0]
            if pid.isdigit() and pid_exists(int(pid)):
                alive.append(int(pid))
            else:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
        return alive

    def acquire(self) -> None:
        with self._locked():
            if not self.ping():
                missing = [c for c in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(c) is None]
                if missing:
                    raise RuntimeError(f"Slurm is not installed (missing {', '.join(missing)}); "
                                       f"run tests/services/slurm.sh (apt-get install slurm-wlm munge)")
                self.start()
            os.makedirs(self.path("users"), exist_ok=True)
            # one token per acquisition: a process may hold the cluster twice (the
            # session fixture and a bench script's slurm_cluster() in one pytest run)
            self._token = f"{os.getpid()}.{uuid.uuid4().hex[:12]}"
            with open(self.path("users", self._token), "w"):
                pass

    def release(self) -> None:
        with self._locked():
            with contextlib.suppress(FileNotFoundError, AttributeError):
                os.unlink(self.path("users", self._token))
            if not self._users():
                self.stop()


@contextlib.contextmanager
def slurm_cluster(directory: str | None = None) -> Iterator[SlurmCluster]:
    """A running cluster for the duration of the block; SLURM_CONF set in os.environ."""
    cluster = SlurmCluster(directory) if directory else SlurmCluster()
    cluster.acquire()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = cluster.conf
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        cluster.release()


try:
    import pytest
except ImportError:  # bench scripts without pytest
    pass
else:

    @pytest.fixture(scope="session")
    def slurm() -> Iterator[SlurmCluster]:
        """The session's real Slurm cluster (started once, reused if one answers)."""
        with slurm_cluster() as cluster:
            yield cluster
