"""Plugin discovery: built-ins, entry points, drop-in files — all through pluggy."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from autopyfactory.config import ConfigError, Key, QueueConfig
from autopyfactory.factory import Factory, build_factory
from autopyfactory.interfaces import KINDS
from autopyfactory.plugins.registry import PluginRegistry
from tests.conftest import local_queue

HALF = """
from autopyfactory.interfaces import SchedulerPlugin
from autopyfactory.config import Key

class Half(SchedulerPlugin):
    '''Halve the number handed on. Keys: sched.half.minimum (0).'''
    name = "Half"
    keys = {"minimum": Key("int", 0)}

    def calc(self, n, info):
        out = max(n // 2, self.options["minimum"])
        return out, f"Half: {n} -> {out}"
"""


def test_builtins_are_registered_through_the_hook():
    registry = PluginRegistry.discover([], entry_points=False)
    assert "Local" in registry.plugins("batchsubmit")
    assert "Ready" in registry.plugins("sched")
    assert registry.find("sched", "ready") is registry.get("sched", "Ready")
    for kind in KINDS.values():
        assert kind.base.kind == kind.name
        for plugin in registry.plugins(kind.name).values():
            assert issubclass(plugin, kind.base)
            assert plugin.__doc__, f"{kind} plugin {plugin.name} has no docstring"


def test_plugin_options_are_complete_from_keys_alone():
    """Every plugin gets every key of its ``keys`` table, with the table's default when unset:
    the plugins read ``options[param]`` and repeat no default of their own."""
    registry = PluginRegistry.discover([], entry_points=False)
    empty = QueueConfig("Q", "queues.conf")
    for kind in KINDS:
        for plugin in registry.plugins(kind).values():
            options = empty.plugin_options(plugin)
            for param, key in plugin.keys.items():
                if not param.endswith("*"):
                    assert options[param.lower()] == key.default, f"{kind} {plugin.name} {param}"


def test_a_default_changed_in_keys_is_the_one_used(monkeypatch):
    from autopyfactory.plugins.batchstatus.slurm import Slurm

    calls = []

    def runner(argv, timeout, env, consume=None):
        calls.append((argv[0], timeout))
        raise OSError("not run in this test")

    monkeypatch.setitem(Slurm.keys, "timeout", Key("float", 7.5, min=1))
    monkeypatch.setitem(Slurm.keys, "squeue", Key("str", "/opt/slurm/bin/squeue"))
    monkeypatch.setattr(Slurm, "runner", staticmethod(runner))
    with pytest.raises(OSError):
        Slurm(QueueConfig("Q", "queues.conf").plugin_options(Slurm), None).poll(["Q"])
    assert calls == [("/opt/slurm/bin/squeue", 7.5)]


def test_dropin_scheduler_is_used_by_a_queue(confdir):
    confdir.dropin("half.py", HALF)
    confdir.write(local_queue("Q", confdir.spool, schedplugin="Fixed, Half",
                              **{"sched.fixed.pilotspercycle": "10", "sched.half.minimum": "1",
                                 "executable": "/bin/true"}))
    config = confdir.load()
    assert config.queues["Q"].get("sched.half.minimum") == 1
    factory = Factory(config)
    factory.start(cycles=1)
    factory.wait()
    factory.stop()
    record = factory.queues["Q"].records[0]
    assert [(s.plugin, s.n) for s in record.steps] == [("Fixed", 10), ("Half", 5)]
    assert record.submitted == 5
    assert "Half: 10 -> 5" in record.message


def test_broken_dropin_is_a_clear_error(confdir):
    confdir.dropin("broken.py", "import nosuchmodule_anywhere\n")
    confdir.write(local_queue("Q", confdir.spool))
    with pytest.raises(ConfigError) as info:
        confdir.load()
    [problem] = info.value.problems
    assert str(problem).startswith(str(confdir.plugins / "broken.py"))
    assert "ModuleNotFoundError" in str(problem)


def test_dropin_keys_are_validated(confdir):
    confdir.dropin("half.py", HALF)
    confdir.write(local_queue("Q", confdir.spool, schedplugin="Half", **{"sched.half.minimum": "x"}))
    with pytest.raises(ConfigError) as info:
        confdir.load()
    assert "[Q] sched.half.minimum: not an integer" in str(info.value)


def test_entry_point_plugin_package(tmp_path, monkeypatch):
    site = tmp_path / "site"
    package = site / "apf_extra_plugins"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent("""
        from autopyfactory.plugins.hookspecs import hookimpl
        from autopyfactory.interfaces import SchedulerPlugin

        class Triple(SchedulerPlugin):
            '''Three times n.'''
            name = "Triple"
            def calc(self, n, info):
                return 3 * n, f"Triple: {3 * n}"

        @hookimpl
        def apf_plugins():
            return [Triple]
    """))
    dist = site / "apf_extra_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: apf-extra-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[autopyfactory]\nextra = apf_extra_plugins\n")
    monkeypatch.syspath_prepend(str(site))
    registry = PluginRegistry.discover([])
    assert registry.find("sched", "Triple") is not None
    assert "apf_extra_plugins" in registry.origins[("sched", "triple")]


def test_the_plugin_system_does_not_import_the_config_loader():
    """The config loader builds the registry; registry and interfaces stand below it (no cycle)."""
    import subprocess
    import sys

    code = ("import sys, autopyfactory.plugins.registry, autopyfactory.interfaces; "
            "print(sorted(m for m in sys.modules if m.startswith('autopyfactory.config')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


COUNTED = """
from autopyfactory.interfaces import SchedulerPlugin

with open({counter!r}, "a") as handle:
    handle.write("loaded\\n")


class Counted(SchedulerPlugin):
    '''Always 3.'''
    name = "Counted"

    def calc(self, n, info):
        return 3, f"Counted: 3 (class {{id(type(self))}})"
"""


def counted_dropin(confdir, tmp_path):
    counter = tmp_path / "loads"
    confdir.dropin("counted.py", COUNTED.format(counter=str(counter)))
    conf = confdir.write(local_queue("Q", confdir.spool, schedplugin="Counted", executable="/bin/true"))
    return conf, counter


def test_daemon_runs_each_dropin_once(confdir, tmp_path):
    """Validation and the running factory use one registry: a drop-in file is executed once."""
    conf, counter = counted_dropin(confdir, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "autopyfactory.cli.daemon", "--conf", str(conf), "--foreground",
                           "--log", "stdout", "--cycles", "1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Counted: 3" in proc.stdout
    assert counter.read_text().splitlines() == ["loaded"]


def test_simulate_runs_each_dropin_once(confdir, tmp_path):
    conf, counter = counted_dropin(confdir, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "autopyfactory.cli.apf", "simulate", "--conf", str(conf),
                           "--activated", "5", "--pending", "0", "--running", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Counted: 3" in proc.stdout
    assert counter.read_text().splitlines() == ["loaded"]


def test_build_factory_runs_the_class_it_validated(confdir, tmp_path):
    conf, counter = counted_dropin(confdir, tmp_path)
    factory = build_factory(str(conf))
    validated = factory.config.registry.get("sched", "Counted")
    factory.start(cycles=1)
    factory.wait()
    factory.stop()
    assert [type(s) for s in factory.queues["Q"].schedulers] == [validated]
    assert factory.queues["Q"].records[0].steps[0].message == f"Counted: 3 (class {id(validated)})"
    assert counter.read_text().splitlines() == ["loaded"]


BOARD = """
from autopyfactory.config import Key
from autopyfactory.info import WMSQueueInfo
from autopyfactory.interfaces import WMSStatusPlugin

class Board(WMSStatusPlugin):
    '''Ten jobs ready everywhere; pilots find the board at BOARD_URL.'''
    name = "Board"
    keys = {"url": Key("str", "http://board.invalid/")}

    @classmethod
    def pilot_environment(cls, options, config):
        return {"BOARD_URL": options["url"]}

    def poll(self, queues):
        return {q: WMSQueueInfo(ready=10) for q in queues}
"""


def test_a_wms_plugin_says_what_its_pilots_need_in_their_environment(confdir):
    """Submit plugins ask the queue's WMS plugin (any plugin, not only Local by name)."""
    confdir.dropin("board.py", BOARD)
    confdir.write(local_queue("B", confdir.spool, wmsstatusplugin="Board", **{"wmsstatus.board.url": "http://b/"})
                  + local_queue("L", confdir.spool))
    config = confdir.load()
    factory = Factory(config)
    try:
        assert factory.context.wms_environment(config.queues["B"]) == {"BOARD_URL": "http://b/"}
        assert factory.context.wms_environment(config.queues["L"]) == {"APF_WMS_SPOOLDIR": str(confdir.spool)}
        submitter = factory.config.registry.get("batchsubmit", "Local")(config.queues["B"], factory.context)
        assert submitter.submit(0).count == 0
        [jdl] = (confdir.logs).rglob("*.jdl")
        assert '"BOARD_URL": "http://b/"' in jdl.read_text()
    finally:
        factory.stop()
