"""Each built-in scheduler plugin: its formula, its edge cases, its message."""

from __future__ import annotations

import pytest

from autopyfactory.info import FinishedPilot
from autopyfactory.plugins.registry import PluginRegistry
from autopyfactory.plugins.sched.builtin import Fixed, Null, Ready, Scale
from autopyfactory.plugins.sched.limits import (
    KeepNRunning,
    MaxPending,
    MaxPerCycle,
    MaxPerFactory,
    MaxToRun,
    MinPending,
    MinPerCycle,
)
from autopyfactory.plugins.sched.queuestatus import StatusOffline, StatusTest
from autopyfactory.plugins.sched.throttle import Throttle
from tests.sched_helpers import ALL, UNKNOWN, make, status


def test_every_plugin_of_the_design_is_registered_with_its_keys():
    registry = PluginRegistry.discover([], entry_points=False)
    names = set(registry.plugins("sched"))
    assert names == {cls.name for cls in ALL}
    keys = {f"sched.{cls.name.lower()}.{param}" for cls in ALL for param in cls.keys}
    assert keys == {
        "sched.ready.offset", "sched.ready.sharewithpeers", "sched.fixed.pilotspercycle", "sched.scale.factor",
        "sched.minpercycle.minimum", "sched.maxpercycle.maximum", "sched.maxpending.maximum",
        "sched.minpending.minimum", "sched.maxtorun.maximum", "sched.keepnrunning.keep_running",
        "sched.statustest.pilots", "sched.statusoffline.pilots", "sched.throttle.interval",
        "sched.throttle.maxtime", "sched.throttle.ratio", "sched.throttle.submit",
        "sched.backlog.offset", "sched.backlog.idlerunning", "sched.backlog.removeidle", "sched.backlog.lookahead", "sched.backlog.window",
        "sched.backlog.waitspan",
        "sched.nqueue.nqueue", "sched.nqueue.depthboost",
    }


@pytest.mark.parametrize("cls", ALL)
def test_every_plugin_documents_its_keys_and_says_its_name(cls):
    for param in cls.keys:
        assert f"sched.{cls.name.lower()}.{param}" in cls.__doc__
    _, message = make(cls).calc(3, status(ready=5, pending=1, running=1, factory_pilots=2))
    assert message.startswith(f"{cls.name}: ")


# ---------------------------------------------------------------- Ready


@pytest.mark.parametrize(
    "ready, offset, pending, expected",
    [(10, 0, 0, 10), (10, 0, 3, 7), (10, 2, 3, 5), (3, 0, 10, 0), (0, 0, 0, 0), (5, 10, 0, 0)],
)
def test_ready(ready, offset, pending, expected):
    n, message = make(Ready, offset=offset).calc(99, status(ready=ready, pending=pending))
    assert n == expected
    assert message == f"Ready: {expected} ({ready} ready - {offset} offset - {pending} pending)"


@pytest.mark.parametrize("side", ["ready", "pending"])
def test_ready_with_unknown_status_is_zero_and_says_which(side):
    n, message = make(Ready).calc(0, status(**{side: UNKNOWN, "ready" if side == "pending" else "pending": 50}))
    assert n == 0
    assert ("WMS" if side == "ready" else "batch") in message and "unknown" in message


def test_ready_offset_defaults_to_zero():
    assert make(Ready).options["offset"] == 0
    assert make(Ready).calc(0, status(ready=4))[0] == 4


# ---------------------------------------------------------------- Fixed, Scale, Null


def test_fixed_overwrites_what_it_is_handed():
    assert make(Fixed, pilotspercycle=4).calc(100, status())[0] == 4
    assert make(Fixed, pilotspercycle=4).calc(-3, status())[0] == 4
    assert make(Fixed).calc(7, status()) == (0, "Fixed: 0 (pilotspercycle)")


def test_fixed_reads_no_status():
    # the queue, not Fixed, holds submission while status is unknown (and says why)
    assert make(Fixed, pilotspercycle=4).calc(0, status(ready=UNKNOWN, pending=UNKNOWN))[0] == 4


@pytest.mark.parametrize(
    "n, factor, expected",
    [(10, 0.5, 5), (3, 0.5, 2), (1, 0.1, 1), (10, 0.3, 3), (7, 1.0, 7), (7, 0.0, 0), (4, 2.5, 10),
     (0, 3.0, 0), (-3, 0.5, -1), (-4, 0.5, -2)],
)
def test_scale_rounds_up(n, factor, expected):
    out, message = make(Scale, factor=factor).calc(n, status())
    assert out == expected
    assert message == f"Scale: {expected} (ceil({n} * {factor:g}))"


def test_scale_default_factor_is_one():
    assert make(Scale).calc(13, status())[0] == 13


def test_null_is_always_zero():
    assert make(Null).calc(500, status(ready=100)) == (0, "Null: 0")
    assert make(Null).calc(-5, status(ready=UNKNOWN))[0] == 0


# ---------------------------------------------------------------- per-cycle caps and floors


def test_maxpercycle():
    plugin = make(MaxPerCycle, maximum=5)
    assert plugin.calc(12, status()) == (5, "MaxPerCycle: 12 capped to 5 (5 max)")
    assert plugin.calc(3, status()) == (3, "MaxPerCycle: 3, within 5 (5 max)")
    assert plugin.calc(5, status())[0] == 5
    assert plugin.calc(-4, status())[0] == -4  # a removal is not a submission
    assert make(MaxPerCycle, maximum=0).calc(12, status())[0] == 0


def test_maxpercycle_unset_is_a_noop_that_says_so():
    assert make(MaxPerCycle).calc(12, status()) == (12, "MaxPerCycle: 12 unchanged (sched.maxpercycle.maximum not set)")


def test_maxpercycle_caps_even_with_unknown_status():
    assert make(MaxPerCycle, maximum=2).calc(9, status(ready=UNKNOWN, pending=UNKNOWN))[0] == 2


def test_minpercycle():
    plugin = make(MinPerCycle, minimum=3)
    assert plugin.calc(0, status()) == (3, "MinPerCycle: 0 raised to 3 (3 min)")
    assert plugin.calc(7, status()) == (7, "MinPerCycle: 7, at least 3 (3 min)")
    assert plugin.calc(-5, status())[0] == 3
    assert make(MinPerCycle).calc(2, status())[0] == 2


def test_minpercycle_reads_no_status():
    assert make(MinPerCycle, minimum=3).calc(0, status(pending=UNKNOWN)) == (3, "MinPerCycle: 0 raised to 3 (3 min)")


# ---------------------------------------------------------------- pending / running caps and floors


def test_maxpending_message_from_the_issue():
    assert make(MaxPending, maximum=10).calc(12, status(pending=7)) == (
        3, "MaxPending: 12 capped to 3 (10 max - 7 pending)")


@pytest.mark.parametrize(
    "n, maximum, pending, expected",
    [(12, 10, 0, 10),  # APF 2.4 skipped the cap when nothing was pending
     (2, 10, 7, 2), (5, 10, 10, 0), (0, 10, 13, -3), (5, 0, 0, 0)],
)
def test_maxpending(n, maximum, pending, expected):
    assert make(MaxPending, maximum=maximum).calc(n, status(pending=pending))[0] == expected


def test_maxpending_over_the_maximum_asks_to_remove_idle_pilots():
    n, message = make(MaxPending, maximum=10).calc(4, status(pending=13, running=50))
    assert n == -3
    assert message.endswith("remove 3 idle")


def test_maxpending_unknown_and_unset():
    assert make(MaxPending, maximum=10).calc(5, status(pending=UNKNOWN))[0] == 0
    assert make(MaxPending).calc(5, status(pending=100))[0] == 5


@pytest.mark.parametrize(
    "n, minimum, pending, expected", [(0, 5, 2, 3), (4, 5, 2, 4), (0, 5, 9, 0), (-2, 5, 9, -2), (1, 0, 0, 1)]
)
def test_minpending(n, minimum, pending, expected):
    assert make(MinPending, minimum=minimum).calc(n, status(pending=pending))[0] == expected


def test_minpending_message_unknown_unset():
    assert make(MinPending, minimum=5).calc(0, status(pending=2)) == (
        3, "MinPending: 0 raised to 3 (5 min - 2 pending)")
    assert make(MinPending, minimum=5).calc(0, status(ready=UNKNOWN))[0] == 0
    assert make(MinPending).calc(0, status(pending=2))[0] == 0


@pytest.mark.parametrize(
    "n, maximum, pending, running, expected",
    [(10, 20, 5, 10, 5), (3, 20, 5, 10, 3), (10, 20, 10, 10, 0), (0, 20, 8, 15, -3), (7, 0, 0, 0, 0)],
)
def test_maxtorun(n, maximum, pending, running, expected):
    out, message = make(MaxToRun, maximum=maximum).calc(n, status(pending=pending, running=running))
    assert out == expected
    assert f"{maximum} max - {pending} pending - {running} running" in message


def test_maxtorun_unknown_and_unset():
    assert make(MaxToRun, maximum=20).calc(5, status(pending=UNKNOWN))[0] == 0
    assert make(MaxToRun).calc(5, status(pending=100, running=100))[0] == 5


@pytest.mark.parametrize(
    "keep, pending, running, expected", [(10, 2, 3, 5), (10, 4, 6, 0), (10, 5, 8, -3), (0, 0, 0, 0), (0, 2, 0, -2)]
)
def test_keepnrunning_overwrites_what_it_is_handed(keep, pending, running, expected):
    out, message = make(KeepNRunning, keep_running=keep).calc(99, status(pending=pending, running=running))
    assert out == expected
    assert message.startswith(f"KeepNRunning: {expected} ({keep} keep - {pending} pending - {running} running)")


def test_keepnrunning_unknown_never_removes():
    assert make(KeepNRunning, keep_running=0).calc(0, status(pending=UNKNOWN))[0] == 0
    assert make(KeepNRunning).calc(4, status(pending=9))[0] == 4


# ---------------------------------------------------------------- MaxPerFactory


def test_maxperfactory():
    plugin = make(MaxPerFactory, factory={"maxperfactory.maximum": 100})
    assert plugin.calc(12, status(factory_pilots=97)) == (3, "MaxPerFactory: 12 capped to 3 (100 max - 97 in the factory)")
    assert plugin.calc(2, status(factory_pilots=97))[0] == 2
    assert plugin.calc(2, status(factory_pilots=100))[0] == 0


def test_maxperfactory_over_the_maximum_does_not_remove_on_its_own_account():
    plugin = make(MaxPerFactory, factory={"maxperfactory.maximum": 100})
    assert plugin.calc(5, status(factory_pilots=130))[0] == 0
    assert plugin.calc(-4, status(factory_pilots=130))[0] == -4


def test_maxperfactory_unknown_count_is_zero():
    n, message = make(MaxPerFactory, factory={"maxperfactory.maximum": 100}).calc(5, status(factory_pilots=None))
    assert n == 0
    assert "unknown" in message


def test_maxperfactory_unset_is_a_noop():
    assert make(MaxPerFactory).calc(5, status(factory_pilots=None))[0] == 5
    assert make(MaxPerFactory, factory={"maxperfactory.maximum": None}).calc(5, status(factory_pilots=10**6))[0] == 5


# ---------------------------------------------------------------- WMS queue status


@pytest.mark.parametrize(
    "cls, trigger", [(StatusTest, "test"), (StatusOffline, "offline")]
)
def test_status_overrides(cls, trigger):
    plugin = make(cls, pilots=2)
    assert plugin.calc(40, status(wms_status=trigger)) == (2, f"{cls.name}: queue {trigger}, 2 (was 40)")
    assert plugin.calc(40, status(wms_status="online")) == (40, f"{cls.name}: 40 unchanged (queue online)")
    other = "offline" if trigger == "test" else "test"
    assert plugin.calc(40, status(wms_status=other))[0] == 40
    assert plugin.calc(-3, status(wms_status="brokeroff"))[0] == -3
    assert make(cls).calc(40, status(wms_status=trigger))[0] == 0  # pilots defaults to 0
    assert plugin.calc(0, status(ready=UNKNOWN, wms_status=trigger))[0] == 0


# ---------------------------------------------------------------- Throttle

NOW = 1_000_000.0


def pilots(runtimes: list[float | None], ended_ago: float = 60.0, state: str = "done") -> list[FinishedPilot]:
    return [
        FinishedPilot(jobid=f"{i}", start=None if rt is None else NOW - ended_ago - rt, end=NOW - ended_ago, state=state)
        for i, rt in enumerate(runtimes)
    ]


def test_throttle_without_history_passes_through_and_says_so():
    n, message = make(Throttle).calc(12, status(now=NOW))
    assert n == 12
    assert "no finished pilots" in message


def test_throttle_caps_a_black_hole():
    n, message = make(Throttle).calc(12, status(now=NOW, finished=pilots([2, 3, 1, 4000])))
    assert n == 1
    assert message == ("Throttle: black hole? 12 capped to 1 "
                       "(3 of 4 pilots in the last 3600 s ran < 10 s, above ratio 0.5)")


def test_throttle_healthy_queue_passes_through():
    n, message = make(Throttle).calc(12, status(now=NOW, finished=pilots([2, 3, 4000, 5000])))
    assert n == 12  # exactly the ratio is not above it
    assert "2 of 4 pilots" in message


def test_throttle_only_lowers():
    finished = pilots([1, 1, 1])
    assert make(Throttle, submit=3).calc(0, status(now=NOW, finished=finished))[0] == 0
    assert make(Throttle, submit=3).calc(2, status(now=NOW, finished=finished))[0] == 2
    assert make(Throttle, submit=3).calc(-2, status(now=NOW, finished=finished))[0] == -2
    assert make(Throttle, submit=0).calc(9, status(now=NOW, finished=finished))[0] == 0


def test_throttle_looks_only_at_the_interval_and_at_pilots_that_ran():
    old = pilots([1, 1, 1, 1], ended_ago=7200)
    never_started = pilots([None, None, None])
    removed = pilots([0, 0, 0], state="removed")
    fine = pilots([4000])
    info = status(now=NOW, finished=old + never_started + removed + fine)
    assert make(Throttle).calc(12, info)[0] == 12
    assert make(Throttle, interval=10_000).calc(12, info)[0] == 1


def test_throttle_keys():
    finished = pilots([30, 30, 4000])
    assert make(Throttle).calc(12, status(now=NOW, finished=finished))[0] == 12
    assert make(Throttle, maxtime=60).calc(12, status(now=NOW, finished=finished))[0] == 1
    assert make(Throttle, maxtime=60, ratio=0.7).calc(12, status(now=NOW, finished=finished))[0] == 12
    assert make(Throttle, maxtime=60, submit=5).calc(12, status(now=NOW, finished=finished))[0] == 5


# ---------------------------------------------------------------- NQueue (APF's SimpleNQueue rule)


@pytest.mark.parametrize("ready, pending, expected", [
    (30, 0, 10),   # below the depth: a full load
    (30, 9, 10),   # still below nqueue
    (30, 12, 10),  # more work than pending, below nqueue x depthboost (20)
    (30, 20, 0),   # depth x boost reached
    (5, 12, 0),    # less work than pending, at or above nqueue
    (0, 0, 0),     # no work: nothing
])
def test_nqueue_keeps_the_depth_while_there_is_work(ready, pending, expected):
    from autopyfactory.plugins.sched.nqueue import NQueue

    n, message = make(NQueue, nqueue=10).calc(7, status(ready=ready, pending=pending))
    assert n == expected and message.startswith("NQueue: ")


def test_nqueue_unset_is_a_noop_and_unknown_status_is_zero():
    from autopyfactory.plugins.sched.nqueue import NQueue

    assert make(NQueue).calc(7, status(ready=30))[0] == 7
    assert make(NQueue, nqueue=10).calc(7, status(ready=UNKNOWN))[0] == 0
