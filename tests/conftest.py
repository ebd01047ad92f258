"""Shared fixtures: write a factory configuration into a temporary directory."""

from __future__ import annotations

import contextlib
import subprocess
import textwrap
from pathlib import Path

import pytest

from autopyfactory.config import FactoryConfig, load
from autopyfactory.factory import Factory
from tests.waiting import stop_process, wait_for  # noqa: F401  (the tests' one wait_for)


class ConfDir:
    """A factory.conf + queues.conf (+ auth.conf, monitor.conf) in a temporary directory."""

    def __init__(self, root: Path):
        self.root = root
        self.plugins = root / "plugins.d"
        self.plugins.mkdir(exist_ok=True)
        self.logs = root / "logs"
        self.spool = root / "spool"

    def write(self, queues: str, factory: str = "", auth: str = "", monitor: str = "") -> Path:
        (self.root / "queues.conf").write_text(textwrap.dedent(queues))
        (self.root / "auth.conf").write_text(textwrap.dedent(auth))
        (self.root / "monitor.conf").write_text(textwrap.dedent(monitor) or "[log]\nmonitorplugin = Log\n")
        base = textwrap.dedent(f"""\
            [Factory]
            factoryId = test-factory
            queueConf = queues.conf
            authConf = auth.conf
            monitorConf = monitor.conf
            baseLogDir = {self.logs}
            plugindirs = {self.plugins}
            wmsstatus.local.sleep = 0.2
            batchstatus.local.sleep = 0.2
            """)
        extra = textwrap.dedent(factory)
        path = self.root / "factory.conf"
        path.write_text(base + extra)
        return path

    def dropin(self, name: str, code: str) -> Path:
        path = self.plugins / name
        path.write_text(textwrap.dedent(code))
        return path

    def load(self) -> FactoryConfig:
        return load(str(self.root / "factory.conf"))

    def work(self, wmsqueue: str, count: int, command: list[str] | None = None) -> None:
        """Put ``count`` work items into the Local WMS spool of ``wmsqueue``."""
        import json

        directory = self.spool / wmsqueue
        directory.mkdir(parents=True, exist_ok=True)
        existing = len(list(directory.glob("*.json")))
        for i in range(count):
            (directory / f"item-{existing + i}.json").write_text(json.dumps({"command": command or ["true"]}))


def datagrams(sock, quiet: float = 0.5) -> list[str]:
    """The datagrams waiting on ``sock`` and those that follow until it is ``quiet`` seconds silent, decoded."""
    sock.settimeout(quiet)
    messages = []
    try:
        while True:
            messages.append(sock.recv(65536).decode())
    except TimeoutError:
        return messages


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A real tmpfs of ``size`` (e.g. ``2m``) mounted at ``path`` (a full or read-only disk in a test);
    skips where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    path.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], timeout=30, check=False)


def fill(directory: Path) -> None:
    """Write ``directory/filler`` until the file system says it is full."""
    with open(directory / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


@pytest.fixture
def panda():
    """A PanDA test server on 127.0.0.1 (tests/panda_double.py)."""
    from tests.panda_double import PandaDouble

    double = PandaDouble()
    double.up()
    yield double
    double.close()


@pytest.fixture
def confdir(tmp_path: Path) -> ConfDir:
    return ConfDir(tmp_path)


@pytest.fixture
def started_factory():
    """``started_factory(confdir, cycles=None)``: a started Factory, stopped after the test."""
    factories = []

    def start(confdir: ConfDir, cycles: int | None = None) -> Factory:
        config = confdir.load()
        factory = Factory(config)
        factory.start(cycles=cycles)
        factories.append(factory)
        return factory

    yield start
    for factory in factories:
        factory.stop(timeout=10)


def local_queue(name: str, spool: Path, **extra: str) -> str:
    """A queue section on the Local plugins; ``extra`` keys add to or replace the defaults."""
    keys = {
        "wmsqueue": name,
        "wmsstatusplugin": "Local",
        "wmsstatus.local.spooldir": str(spool),
        "batchstatusplugin": "Local",
        "batchsubmitplugin": "Local",
        "apfqueue.sleep": "0.3",
        "schedplugin": "Ready",
        "executable.arguments": "--wrapperwmsqueue=%(wmsqueue)s --wrapperplugin=local",
        **extra,
    }
    return f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"


# the RPMs built once per session (``rpms``, tests/rpmbuild.py) and the real Slurm cluster (session
# fixture ``slurm``, tests/slurmcluster.py)
# a real PanDA server (session fixture ``panda_server``), see tests/pandainstance.py
from tests.pandainstance import panda_server  # noqa: E402,F401
from tests.rpmbuild import rpms  # noqa: E402,F401
from tests.slurmcluster import slurm  # noqa: E402,F401


@pytest.fixture
def condor_pool(monkeypatch: pytest.MonkeyPatch):
    """Schedds and collectors behind the real htcondor2 bindings (tests/condordouble.py)."""
    from tests.condordouble import CondorPool

    return CondorPool().install(monkeypatch)


# A test that uses one of these fixtures gets the marker of the same name (pyproject.toml),
# so ``-m "not slurm"`` deselects every test of the cluster and the cluster is never started.
MARKED_FIXTURES = ("slurm", "browser", "panda_server")


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection looks at the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in MARKED_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(name)
