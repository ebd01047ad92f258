"""Scheduler keys through the real config loader: defaults, types, ranges, clear errors."""

from __future__ import annotations

import pytest

from autopyfactory.config import ConfigError
from autopyfactory.plugins.registry import PluginRegistry
from autopyfactory.plugins.sched.limits import MaxPerFactory
from tests.sched_helpers import queue_text, status

PRODUCTION_CHAIN = "Ready, Scale, MaxPerCycle, MinPerCycle, StatusTest, StatusOffline, MaxPending"


def load_queue(confdir, factory: str = "", **keys: str):
    confdir.write(queue_text("SITE", confdir.spool, **keys), factory=factory)
    config = confdir.load()
    return config, config.queues["SITE"]


def errors(confdir, factory: str = "", **keys: str) -> list[str]:
    confdir.write(queue_text("SITE", confdir.spool, **keys), factory=factory)
    with pytest.raises(ConfigError) as caught:
        confdir.load()
    return [str(problem) for problem in caught.value.problems]


def test_defaults_of_every_plugin_in_the_chain(confdir):
    chain = PRODUCTION_CHAIN + ", MinPending, MaxToRun, KeepNRunning, Throttle, Fixed, MaxPerFactory, Null"
    _, queue = load_queue(confdir, schedplugin=chain)
    values = queue.values
    assert values["schedplugin"] == [name.strip() for name in chain.split(",")]
    assert values["sched.ready.offset"] == 0
    assert values["sched.scale.factor"] == 1.0
    assert values["sched.fixed.pilotspercycle"] == 0
    assert values["sched.statustest.pilots"] == 0
    assert values["sched.statusoffline.pilots"] == 0
    assert (values["sched.throttle.interval"], values["sched.throttle.maxtime"]) == (3600, 10)
    assert (values["sched.throttle.ratio"], values["sched.throttle.submit"]) == (0.5, 1)
    for unset in ("sched.maxpercycle.maximum", "sched.minpercycle.minimum", "sched.maxpending.maximum",
                  "sched.minpending.minimum", "sched.maxtorun.maximum", "sched.keepnrunning.keep_running"):
        assert values[unset] is None


def test_typed_values_reach_the_plugin(confdir):
    config, queue = load_queue(
        confdir, schedplugin="KeepNRunning, Scale", **{"sched.keepnrunning.keep_running": "8",
                                                         "sched.scale.factor": "0.5"}
    )
    registry = PluginRegistry.discover([], entry_points=False)
    keep = registry.get("sched", "KeepNRunning")(queue, config.factory)
    scale = registry.get("sched", "scale")(queue, config.factory)
    n, _ = keep.calc(0, status(pending=1, running=2))
    assert scale.calc(n, status())[0] == 3  # ceil((8 - 3) * 0.5)


def test_keys_are_case_insensitive_like_apf(confdir):
    _, queue = load_queue(confdir, schedplugin="keepnrunning", **{"sched.KeepNRunning.keep_running": "4"})
    assert queue.values["schedplugin"] == ["KeepNRunning"]
    assert queue.values["sched.keepnrunning.keep_running"] == 4


def test_maxperfactory_reads_the_factory_section(confdir):
    config, queue = load_queue(confdir, factory="maxperfactory.maximum = 10\n", schedplugin="Fixed, MaxPerFactory",
                               **{"sched.fixed.pilotspercycle": "8"})
    plugin = MaxPerFactory(queue, config.factory)
    assert plugin.calc(8, status(factory_pilots=7))[0] == 3


@pytest.mark.parametrize(
    "key, value, what",
    [
        ("sched.maxpercycle.maximum", "-3", "too small (expected at least 0, got '-3')"),
        ("sched.maxpercycle.maximum", "abc", "not an integer (expected an integer, got 'abc')"),
        ("sched.ready.offset", "-1", "too small"),
        ("sched.fixed.pilotspercycle", "2.5", "not an integer"),
        ("sched.scale.factor", "half", "not a number"),
        ("sched.scale.factor", "-0.5", "too small"),
        ("sched.scale.factor", "nan", "not a finite number"),
        ("sched.minpercycle.minimum", "-1", "too small"),
        ("sched.maxpending.maximum", "ten", "not an integer"),
        ("sched.minpending.minimum", "-2", "too small"),
        ("sched.maxtorun.maximum", "-1", "too small"),
        ("sched.keepnrunning.keep_running", "x", "not an integer"),
        ("sched.statustest.pilots", "-1", "too small"),
        ("sched.statusoffline.pilots", "some", "not an integer"),
        ("sched.throttle.interval", "0", "too small"),
        ("sched.throttle.maxtime", "-5", "too small"),
        ("sched.throttle.ratio", "1.5", "too large (expected at most 1, got '1.5')"),
        ("sched.throttle.submit", "-1", "too small"),
    ],
)
def test_bad_values_name_file_section_and_key(confdir, key, value, what):
    problems = errors(confdir, schedplugin="Ready", **{key: value})
    queues_conf = confdir.root / "queues.conf"
    assert len(problems) == 1
    assert problems[0].startswith(f"{queues_conf}: [SITE] {key}: ")
    assert what in problems[0]


def test_bad_value_in_default_is_reported_on_the_queue_that_inherits_it(confdir):
    confdir.write("[DEFAULT]\nsched.maxpercycle.maximum = -3\n\n" + queue_text("SITE", confdir.spool)
                  + queue_text("OWN", confdir.spool).replace("[OWN]\n", "[OWN]\nsched.maxpercycle.maximum = 3\n"))
    with pytest.raises(ConfigError) as caught:
        confdir.load()
    queues = confdir.root / "queues.conf"
    assert [str(p) for p in caught.value.problems] == [
        f"{queues}: [SITE] sched.maxpercycle.maximum: too small (expected at least 0, got '-3') "
        f"(inherited from [DEFAULT], set at {queues} line 2)"
    ]


def test_bad_factory_maximum(confdir):
    problems = errors(confdir, factory="maxperfactory.maximum = -1\n")
    assert problems == [
        f"{confdir.root / 'factory.conf'}: [Factory] maxperfactory.maximum: too small (expected at least 0, got '-1')"
    ]


def test_unknown_scheduler_lists_the_available_ones(confdir):
    problems = errors(confdir, schedplugin="Ready, MaxPerCylce")
    assert len(problems) == 1
    assert "unknown scheduler plugin" in problems[0] and "'MaxPerCylce'" in problems[0]
    for name in ("KeepNRunning", "MaxPerCycle", "Throttle", "StatusOffline"):
        assert name in problems[0]


def test_misspelt_key_is_a_warning_with_the_closest_known_key(confdir):
    config, _ = load_queue(confdir, schedplugin="KeepNRunning", **{"sched.keepnrunning.keeprunning": "3"})
    assert any("closest known key: sched.keepnrunning.keep_running" in str(w) for w in config.warnings)
