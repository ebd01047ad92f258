"""``apf simulate``: the real console script on the shipped and an APF 2.4-style config."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autopyfactory.cli.simulate import simulate
from autopyfactory.factory import Factory
from tests.conftest import local_queue, wait_for
from tests.sched_helpers import queue_text

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "etc" / "demo" / "factory.conf"
APF24 = ROOT / "tests" / "data" / "apf24" / "factory.conf"
APF = str(Path(sys.executable).with_name("apf")) if Path(sys.executable).with_name("apf").exists() else shutil.which("apf")
PRODUCTION_CHAIN = ["Ready", "Scale", "MaxPerCycle", "MinPerCycle", "StatusTest", "StatusOffline", "MaxPending"]
STEP = re.compile(r"^(?P<plugin>\w+)\s+(?P<n>-?\d+)\s+(?P<message>\S.*)$")


def apf(*args: str | Path) -> subprocess.CompletedProcess:
    assert APF, "the apf console script is not installed (make install)"
    return subprocess.run([APF, *map(str, args)], capture_output=True, text=True, timeout=120)


def run(conf: Path, *args: str | Path) -> tuple[list[tuple[str, int, str]], int, list[str]]:
    """(steps as (plugin, n, message), final, every output line) of a successful simulate."""
    done = apf("simulate", "--conf", conf, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("final: "), lines
    steps = [(m["plugin"], int(m["n"]), m["message"]) for m in map(STEP.match, lines) if m]
    for plugin, _, message in steps:
        assert message.startswith(f"{plugin}: ")
    return steps, int(lines[-1].removeprefix("final: ")), lines


# ---------------------------------------------------------------- the shipped config


def test_shipped_demo_config():
    steps, final, lines = run(DEMO, "--activated", "30", "--pending", "2", "--running", "1")
    assert lines[0].startswith("# queue DEMO ")
    assert steps == [
        ("Ready", 28, "Ready: 28 (30 ready - 0 offset - 2 pending)"),
        ("MaxPerCycle", 5, "MaxPerCycle: 28 capped to 5 (5 max)"),
    ]
    assert final == 5


def test_shipped_demo_config_with_the_queue_named_and_no_work():
    steps, final, _ = run(DEMO, "--queue", "DEMO", "--activated", "0", "--pending", "0", "--running", "3")
    assert [n for _, n, _ in steps] == [0, 0]
    assert final == 0


# ---------------------------------------------------------------- an APF 2.4 production config


@pytest.mark.parametrize(
    "activated, pending, running, status, numbers, final",
    [
        # Ready, Scale 0.25, MaxPerCycle 100, MinPerCycle 0, StatusTest 1, StatusOffline 0, MaxPending 20
        ("400", "5", "100", "online", [395, 99, 99, 99, 99, 99, 15], 15),
        ("40", "5", "100", "online", [35, 9, 9, 9, 9, 9, 9], 9),
        ("1000", "0", "0", "online", [1000, 250, 100, 100, 100, 100, 20], 20),
        ("400", "5", "100", "test", [395, 99, 99, 99, 1, 1, 1], 1),
        ("400", "5", "100", "offline", [395, 99, 99, 99, 99, 0, 0], 0),
        ("0", "0", "0", "online", [0, 0, 0, 0, 0, 0, 0], 0),
        ("400", "30", "100", "online", [370, 93, 93, 93, 93, 93, -10], -10),
    ],
)
def test_apf24_production_chain(activated, pending, running, status, numbers, final):
    steps, got, lines = run(APF24, "--queue", "BNL_PROD-gridgk01", "--activated", activated,
                            "--pending", pending, "--running", running, "--status", status)
    assert [plugin for plugin, _, _ in steps] == PRODUCTION_CHAIN
    assert [n for _, n, _ in steps] == numbers
    assert got == final
    if final < 0:
        assert any("remove 10 idle pilots" in line for line in lines)


def test_apf24_first_queue_is_the_default():
    steps, final, lines = run(APF24, "--activated", "400", "--pending", "5", "--running", "100")
    assert lines[0].startswith("# queue BNL_PROD-gridgk01 ")
    assert final == 15


def test_apf24_final_applies_the_ceilings_of_the_real_cycle():
    # MinPerCycle 8 after MaxPerCycle 5: the chain says 8, the queue's MaxPerCycle ceiling says 5
    steps, final, lines = run(APF24, "--queue", "ANALY_BNL_SHORT-gridgk02", "--activated", "400",
                              "--pending", "5", "--running", "100")
    assert steps[-1][:2] == ("MaxPending", 8)
    assert "after the chain: MaxPerCycle ceiling: 8 capped to 5" in lines
    assert final == 5
    # [Factory] maxperfactory.maximum = 500 with this queue's 498 pilots
    _, final, lines = run(APF24, "--queue", "ANALY_BNL_SHORT-gridgk02", "--activated", "400",
                          "--pending", "0", "--running", "498")
    assert "after the chain: MaxPerFactory ceiling: 5 capped to 2 (500 max - 498 in the factory)" in lines
    assert final == 2


def test_apf24_disabled_queue_can_be_simulated_and_says_so():
    steps, final, lines = run(APF24, "--queue", "BNL_TEST-gridgk03", "--activated", "9", "--pending", "0",
                              "--running", "0")
    assert "disabled" in lines[0]
    assert steps == [("Fixed", 2, "Fixed: 2 (pilotspercycle)")]
    assert final == 2


# ---------------------------------------------------------------- bad input


def test_unknown_queue_lists_the_queues():
    done = apf("simulate", "--conf", APF24, "--queue", "NOPE", "--activated", "1", "--pending", "0", "--running", "0")
    assert done.returncode == 2
    assert "no queue 'NOPE'" in done.stderr
    assert "BNL_PROD-gridgk01, ANALY_BNL_SHORT-gridgk02, BNL_TEST-gridgk03" in done.stderr


@pytest.mark.parametrize("flag, value", [("--activated", "-1"), ("--pending", "many"), ("--running", "1.5")])
def test_bad_numbers_are_rejected(flag, value):
    args = {"--activated": "1", "--pending": "0", "--running": "0", flag: value}
    done = apf("simulate", "--conf", DEMO, *[x for kv in args.items() for x in kv])
    assert done.returncode == 2
    assert flag in done.stderr


def test_missing_numbers_and_bad_status_are_rejected():
    assert apf("simulate", "--conf", DEMO, "--activated", "1", "--pending", "0").returncode == 2
    done = apf("simulate", "--conf", DEMO, "--activated", "1", "--pending", "0", "--running", "0", "--status", "up")
    assert done.returncode == 2
    assert "--status" in done.stderr


def test_bad_config_prints_the_problem_and_exits_2(confdir):
    conf = confdir.write(local_queue("SITE", confdir.spool, **{"sched.maxpercycle.maximum": "abc"}))
    done = apf("simulate", "--conf", conf, "--activated", "1", "--pending", "0", "--running", "0")
    assert done.returncode == 2
    assert done.stdout.strip() == (
        f"{confdir.root / 'queues.conf'}: [SITE] sched.maxpercycle.maximum: "
        "not an integer (expected an integer, got 'abc')"
    )


# ---------------------------------------------------------------- no side effects


def test_simulate_touches_nothing(confdir):
    """Work waits in the Local WMS spool: simulate neither reads it nor starts pilots nor writes logs."""
    conf = confdir.write(queue_text("SITE", confdir.spool, "Ready, Fixed", **{"sched.fixed.pilotspercycle": "3"}))
    confdir.work("SITE", 10)
    before = sorted(p.relative_to(confdir.root) for p in confdir.root.rglob("*"))
    steps, final, _ = run(conf, "--activated", "0", "--pending", "0", "--running", "0")
    assert steps[0][:2] == ("Ready", 0)  # the spool's 10 items were not looked at
    assert final == 3
    assert sorted(p.relative_to(confdir.root) for p in confdir.root.rglob("*")) == before
    assert not confdir.logs.exists()


# ---------------------------------------------------------------- same number as the real cycle


def test_simulate_gives_what_a_real_cycle_submits(confdir):
    """A real cycle of the factory (Local WMS and batch), then simulate on the status it planned from."""
    # the first cycle waits (up to apfqueue.sleep) for its first status: give a loaded machine time
    queue = queue_text("SITE", confdir.spool, "Ready, MinPerCycle", executable="/bin/true", **{
        "sched.maxpercycle.maximum": "4", "sched.minpercycle.minimum": "6", "apfqueue.sleep": "60"})
    confdir.write(queue, factory="maxperfactory.maximum = 3\n")
    confdir.work("SITE", 2)
    config = confdir.load()
    factory = Factory(config)
    factory.start(cycles=1)
    try:
        apfqueue = factory.queues["SITE"]
        wait_for(lambda: apfqueue.cycles >= 1, what="the one cycle")
        assert apfqueue.cycles == 1
    finally:
        factory.stop()
    record = apfqueue.records[0]
    assert record.wms is not None and record.batch is not None, record.message
    # the chain says max(2 ready, 6) = 6; MaxPerCycle ceiling 4; MaxPerFactory ceiling 3
    assert record.decided == 6
    assert record.submitted == 3

    steps, holds, final = simulate(config, config.queues["SITE"], record.wms["ready"],
                                   record.batch["pending"], record.batch["running"], record.wms["status"])
    assert [(s.plugin, s.n, s.message) for s in steps] == [(s.plugin, s.n, s.message) for s in record.steps]
    assert final == record.submitted
    assert holds == ["MaxPerCycle ceiling: 6 capped to 4", "MaxPerFactory ceiling: 4 capped to 3 (3 max - 0 in the factory)"]
    assert holds == record.holds


# ---------------------------------------------------------------- drop-in plugins


HALF = '''
from autopyfactory.interfaces import SchedulerPlugin

class Half(SchedulerPlugin):
    """Halve the number handed on."""
    name = "Half"

    def calc(self, n, info):
        return n // 2, f"Half: {n} -> {n // 2}"
'''

BROKEN = '''
from autopyfactory.interfaces import SchedulerPlugin

class Broken(SchedulerPlugin):
    """Raises."""
    name = "Broken"

    def calc(self, n, info):
        raise ZeroDivisionError("division by zero")
'''


def test_dropin_plugin_and_maxperfactory(confdir):
    confdir.dropin("half.py", HALF)
    conf = confdir.write(queue_text("SITE", confdir.spool, "Ready, Half, MaxPerFactory"),
                         factory="maxperfactory.maximum = 30\n")
    steps, final, _ = run(conf, "--activated", "40", "--pending", "10", "--running", "17")
    # the factory-wide count is this queue's pending + running
    assert steps == [
        ("Ready", 30, "Ready: 30 (40 ready - 0 offset - 10 pending)"),
        ("Half", 15, "Half: 30 -> 15"),
        ("MaxPerFactory", 3, "MaxPerFactory: 15 capped to 3 (30 max - 27 in the factory)"),
    ]
    assert final == 3


def test_a_plugin_that_raises_is_named(confdir):
    confdir.dropin("broken.py", BROKEN)
    conf = confdir.write(queue_text("SITE", confdir.spool, "Ready, Broken"))
    done = apf("simulate", "--conf", conf, "--activated", "4", "--pending", "0", "--running", "0")
    assert done.returncode == 1
    assert done.stderr.strip() == "queue SITE: scheduler plugin Broken failed: ZeroDivisionError: division by zero"
    assert "Traceback" not in done.stderr
