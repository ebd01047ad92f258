"""Invariants of the scheduler chain, tried on generated chains, keys and status (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from autopyfactory.config import QueueConfig
from autopyfactory.info import BatchQueueInfo, FinishedPilot, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo
from autopyfactory.plugins.sched._common import StatusStep
from autopyfactory.plugins.sched.builtin import Ready
from autopyfactory.plugins.sched.limits import KeepNRunning, MaxPending, MaxPerCycle, MaxToRun
from autopyfactory.queue import cycle_ceiling, run_chain
from tests.sched_helpers import ALL, make

# Fixed and MinPerCycle read no status and raise the number: the queue holds them on unknown status
NO_FLOOR = [cls for cls in ALL if cls.name not in ("Fixed", "MinPerCycle")]

# plugins are cheap; no deadline so a loaded machine does not fail a test
thorough = settings(deadline=None, max_examples=300)

NOW = 1_000_000.0
counts = st.integers(min_value=0, max_value=100_000)
handed = st.integers(min_value=-100_000, max_value=100_000)


def value_for(param: str, key) -> st.SearchStrategy:
    if param == "ratio":
        return st.floats(min_value=0, max_value=1)
    if key.kind == "float":
        return st.floats(min_value=0, max_value=20, allow_nan=False, allow_infinity=False)
    ints = st.integers(min_value=int(key.min or 0), max_value=5_000)
    return st.one_of(st.none(), ints) if key.default is None else ints


@st.composite
def plugins(draw, classes=ALL):
    cls = draw(st.sampled_from(classes))
    params = {param: draw(value_for(param, key)) for param, key in cls.keys.items()}
    factory = {"maxperfactory.maximum": draw(st.one_of(st.none(), counts))}
    return make(cls, factory=factory, **params)


finished_pilots = st.lists(
    st.builds(
        FinishedPilot,
        jobid=st.just("1.0"),
        start=st.one_of(st.none(), st.floats(min_value=NOW - 10_000, max_value=NOW)),
        end=st.floats(min_value=NOW - 10_000, max_value=NOW),
        state=st.sampled_from(["done", "fault", "removed"]),
    ),
    max_size=20,
)

wms_infos = st.builds(WMSQueueInfo, ready=counts, status=st.sampled_from(["online", "offline", "test", "brokeroff"]))
batch_infos = st.builds(BatchQueueInfo, pending=counts, running=counts)


@st.composite
def known_status(draw):
    return SchedInfo(
        wms=draw(wms_infos), batch=draw(batch_infos), factory_pilots=draw(st.one_of(st.none(), counts)),
        now=NOW, finished=draw(finished_pilots),
    )


@st.composite
def unknown_status(draw):
    wms, batch = draw(st.sampled_from([(True, False), (False, True), (False, False)]))
    return SchedInfo(
        wms=draw(wms_infos) if wms else None, batch=draw(batch_infos) if batch else None,
        factory_pilots=draw(st.one_of(st.none(), counts)), now=NOW, finished=draw(finished_pilots),
    )


any_status = st.one_of(known_status(), unknown_status())


@thorough
@given(chain=st.lists(plugins(), max_size=8), maximum=st.integers(min_value=0, max_value=1_000), info=any_status)
def test_maxpercycle_is_never_exceeded_whatever_precedes_it(chain, maximum, info):
    cap = make(MaxPerCycle, maximum=maximum)
    steps = []
    n = run_chain([*chain, cap], info, steps)
    assert n <= maximum
    assert len(steps) == len(chain) + 1


@thorough
@given(chain=st.lists(plugins(), max_size=8), maximum=st.integers(min_value=0, max_value=1_000), info=any_status)
def test_the_cycle_ceiling_holds_whatever_the_chain_says(chain, maximum, info):
    """MaxPerCycle anywhere, or only as a key: what the queue submits never exceeds it."""
    queue = QueueConfig("TESTQ", "queues.conf", {"sched.maxpercycle.maximum": maximum})
    n = run_chain(chain, info, [])
    capped, why = cycle_ceiling(n, queue)
    assert capped <= maximum
    assert capped == n or (n > maximum and why)


@thorough
@given(chain=st.lists(plugins(NO_FLOOR), max_size=8), info=unknown_status())
def test_with_unknown_status_ready_yields_zero_whatever_follows(chain, info):
    """Ready, then any steps but the two that read no status and raise (Fixed, MinPerCycle)."""
    steps = []
    assert run_chain([make(Ready), *chain], info, steps) == 0
    assert all(step.n == 0 for step in steps), steps  # not even a removal on the way


@thorough
@given(chain=st.lists(plugins(), max_size=8), info=unknown_status())
def test_with_unknown_status_no_step_that_reads_status_asks_for_pilots_or_removals(chain, info):
    steps = []
    run_chain(chain, info, steps)
    for plugin, step in zip(chain, steps, strict=True):
        if isinstance(plugin, StatusStep):
            assert step.n == 0 and "unknown" in step.message, step


@thorough
@given(n=handed, maximum=counts, batch=batch_infos, wms=wms_infos)
def test_maxtorun_never_lets_pending_plus_running_exceed_its_maximum(n, maximum, batch, wms):
    out, _ = make(MaxToRun, maximum=maximum).calc(n, SchedInfo(wms=wms, batch=batch))
    assert out <= n
    assert batch.pending + batch.running + out <= maximum
    if batch.pending + batch.running + n <= maximum:
        assert out == n  # only caps when it has to


@thorough
@given(chain=st.lists(plugins(), max_size=6), maximum=counts, info=known_status())
def test_maxtorun_last_in_any_chain(chain, maximum, info):
    n = run_chain([*chain, make(MaxToRun, maximum=maximum)], info, [])
    assert info.batch.pending + info.batch.running + n <= maximum


@thorough
@given(n=handed, maximum=counts, batch=batch_infos, wms=wms_infos)
def test_maxpending_never_lets_pending_exceed_its_maximum(n, maximum, batch, wms):
    out, _ = make(MaxPending, maximum=maximum).calc(n, SchedInfo(wms=wms, batch=batch))
    assert batch.pending + out <= maximum
    assert out == min(n, maximum - batch.pending)


@thorough
@given(n=handed, keep=counts, batch=batch_infos, wms=wms_infos)
def test_keepnrunning_aims_at_exactly_keep_running(n, keep, batch, wms):
    out, message = make(KeepNRunning, keep_running=keep).calc(n, SchedInfo(wms=wms, batch=batch))
    assert batch.pending + batch.running + out == keep
    assert (out < 0) == ("remove" in message)


@thorough
@given(chain=st.lists(plugins(), max_size=8), info=any_status)
def test_every_step_returns_an_int_and_a_message_naming_itself(chain, info):
    n = 0
    for plugin in chain:
        n, message = plugin.calc(n, info)
        assert type(n) is int
        assert message.startswith(f"{plugin.name}: ")
