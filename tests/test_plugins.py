"""Plugin discovery: built-ins, entry points, drop-in files — all through pluggy."""

from __future__ import annotations

import textwrap

import pytest

from autopyfactory.config import ConfigError
from autopyfactory.factory import Factory
from autopyfactory.interfaces import PLUGIN_BASES
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
    for kind, base in PLUGIN_BASES.items():
        for plugin in registry.plugins(kind).values():
            assert issubclass(plugin, base)
            assert plugin.__doc__, f"{kind} plugin {plugin.name} has no docstring"


def test_dropin_scheduler_is_used_by_a_queue(confdir):
    confdir.dropin("half.py", HALF)
    confdir.write(local_queue("Q", confdir.spool, schedplugin="Fixed, Half",
                              **{"sched.fixed.pilotspercycle": "10", "sched.half.minimum": "1",
                                 "executable": "/bin/true"}))
    config = confdir.load()
    assert config.queues["Q"].get("sched.half.minimum") == 1
    factory = Factory(config, PluginRegistry.discover(config.get("plugindirs")))
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
    factory = Factory(config, PluginRegistry.discover(config.get("plugindirs")))
    try:
        assert factory.context.wms_environment(config.queues["B"]) == {"BOARD_URL": "http://b/"}
        assert factory.context.wms_environment(config.queues["L"]) == {"APF_WMS_SPOOLDIR": str(confdir.spool)}
        submitter = factory.registry.get("batchsubmit", "Local")(config.queues["B"], factory.context)
        assert submitter.submit(0).count == 0
        [jdl] = (confdir.logs).rglob("*.jdl")
        assert '"BOARD_URL": "http://b/"' in jdl.read_text()
    finally:
        factory.stop()
