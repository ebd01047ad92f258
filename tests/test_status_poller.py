"""StatusPoller failure handling: deadline, retry with backoff, circuit breaker, health."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from autopyfactory.commands import TimedCaller
from autopyfactory.info import WMSQueueInfo
from autopyfactory.status import (
    BREAKER_CLOSED,
    BREAKER_HALF_OPEN,
    BREAKER_OPEN,
    MAX_ABANDONED_CALLS,
    StatusPoller,
    Unknown,
)
from tests.conftest import wait_for


class FakeClock:
    """The poller's clock in tests of its timing: time moves only when the test says so."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedPlugin:
    """A status plugin whose next answers are scripted: a dict, an exception, or 'hang'."""

    name = "Scripted"

    def __init__(self, clock=time.time, mode: str = "good"):
        self.clock = clock
        self.calls: list[float] = []  # when each call came, by ``clock``
        self.mode = mode  # good | fail | hang | notadict
        self.release = threading.Event()
        self.lock = threading.Lock()

    def poll(self, queues):
        with self.lock:
            self.calls.append(self.clock())
        if self.mode == "fail":
            raise ConnectionError("endpoint down")
        if self.mode == "hang":
            self.release.wait(30)
        if self.mode == "notadict":
            return ["q1"]
        return {q: WMSQueueInfo(ready=1) for q in queues} | {"odd": Unknown("site missing from data")}


@contextlib.contextmanager
def running(poller: StatusPoller) -> Iterator[StatusPoller]:
    """The poller's own thread, for the length of the block."""
    poller.start()
    try:
        yield poller
    finally:
        poller.stop()
        poller.join(5)


def make(plugin, **kw) -> StatusPoller:
    args = {"sleep": 0.2, "maxage": 5.0, "breaker_failures": 3, "breaker_cooldown": 1.0} | kw
    poller = StatusPoller("wmsstatus", plugin, "Scripted(x)", **args)
    poller.add_queue("q1")
    poller.add_queue("odd")
    return poller


def test_good_answer_and_unknown_marker():
    poller = make(ScriptedPlugin())
    poller.poll_once()
    assert poller.get("q1")[0] == WMSQueueInfo(ready=1)
    info, taken, why = poller.get("odd")
    assert info is None and taken is not None
    assert why == "Scripted(x): site missing from data"
    assert poller.get("absent")[2] == "Scripted(x) reports nothing for absent"


def test_stale_answer_is_unknown_and_names_endpoint_and_error():
    plugin = ScriptedPlugin()
    poller = make(plugin, maxage=1.0)
    poller.poll_once()
    plugin.mode = "fail"
    poller.poll_once()
    info, _, why = poller.get("q1", now=time.time() + 2)
    assert info is None
    assert "Scripted(x)" in why and "maxage 1s" in why and "ConnectionError: endpoint down" in why


def test_breaker_opens_after_k_failures_then_probe_closes_it():
    clock = FakeClock()
    plugin = ScriptedPlugin(clock, mode="fail")
    poller = make(plugin, breaker_failures=3, breaker_cooldown=2.0, clock=clock)
    with running(poller):
        # failures are retried after the backoff (min(sleep, 1s) = 0.2s), by the poller's clock
        t0 = clock.now
        for failures in (1, 2):
            wait_for(lambda n=failures: poller.failures == n, what=f"failure {failures}")
            clock.advance(0.2)
            poller.wake()
        wait_for(lambda: poller.breaker_opened == 1, what="breaker open")
        assert plugin.calls == pytest.approx([t0, t0 + 0.2, t0 + 0.4])
        health = poller.health()
        assert health["breaker"] == "open" and health["consecutive_failures"] == 3
        assert health["last_error"] == "ConnectionError: endpoint down"
        assert health["breaker_until"] == pytest.approx(t0 + 0.4 + 2.0)
        # neither wake-ups nor time short of the cool-down make a call
        clock.advance(1.7)
        for _ in range(5):
            poller.wake()
        assert poller.due_in() == pytest.approx(0.3)
        time.sleep(0.2)  # the thread had its chance
        assert len(plugin.calls) == 3 and poller.breaker == BREAKER_OPEN
        assert "circuit breaker open" in poller.get("q1")[2]
        # the cool-down is over: one probe; it fails and the breaker opens again at once
        clock.advance(0.3)
        poller.wake()
        wait_for(lambda: poller.breaker_opened == 2, what="failed probe re-opens")
        assert poller.breaker == BREAKER_OPEN and poller.failures == 4
        assert len(plugin.calls) == 4 and poller.breaker_until == pytest.approx(clock.now + 2.0)
        plugin.mode = "good"
        clock.advance(2.0)
        poller.wake()
        wait_for(lambda: poller.breaker == BREAKER_CLOSED, what="breaker closed")
        assert poller.failures == 0 and poller.get("q1")[0] == WMSQueueInfo(ready=1)
        assert len(plugin.calls) == 5
        health = poller.health()
        assert health["healthy"] and health["last_success"] == clock.now
        assert health["failures_total"] == 4 and health["breaker_opened"] == 2
        assert health["last_error"] == "ConnectionError: endpoint down"  # kept for the status page


def test_hard_deadline_on_a_hanging_plugin_and_no_pile_up():
    plugin = ScriptedPlugin(mode="hang")
    poller = make(plugin, call_timeout=0.3, breaker_failures=10)
    poller.poll_once()  # returns although the plugin hangs (for 30s: then it would answer)
    assert poller.failures == 1 and "no answer within 0.3s" in poller.last_error
    # abandoned calls go on hanging: new calls still go ahead, up to MAX_ABANDONED_CALLS of them...
    for _ in range(MAX_ABANDONED_CALLS - 1):
        poller.poll_once()
    assert len(plugin.calls) == MAX_ABANDONED_CALLS
    assert poller.health()["abandoned_calls"] == MAX_ABANDONED_CALLS
    # ...then the next attempts fail at once without calling again, saying why
    poller.poll_once()
    assert len(plugin.calls) == MAX_ABANDONED_CALLS
    assert "3 call(s) abandoned after their deadline have still not returned" in poller.last_error
    plugin.release.set()
    plugin.mode = "good"
    wait_for(lambda: poller._caller.abandoned == 0, what="stuck calls to end")
    poller.poll_once()
    assert poller.failures == 0 and poller.get("q1")[0] == WMSQueueInfo(ready=1)


def test_a_hung_call_never_blocks_recovery():
    # the endpoint hangs one call for good, then answers again: the next poll must not wait for the hung one
    plugin = ScriptedPlugin(mode="hang")
    poller = make(plugin, call_timeout=0.3, breaker_failures=10)
    poller.poll_once()
    assert poller.get("q1")[0] is None
    plugin.mode = "good"
    poller.poll_once()
    assert poller.failures == 0 and poller.get("q1")[0] == WMSQueueInfo(ready=1)
    assert poller.health()["abandoned_calls"] == 1  # still hanging, reported
    plugin.release.set()
    wait_for(lambda: poller.health()["abandoned_calls"] == 0, what="the hung call to end")


def test_retry_backoff_doubles_from_one_second_up_to_sleep():
    clock = FakeClock()
    plugin = ScriptedPlugin(clock, mode="fail")
    poller = make(plugin, sleep=10.0, breaker_failures=100, clock=clock)
    waits = []
    for _ in range(6):
        assert poller.due_in() <= 0
        poller.poll_once()
        waits.append(poller.due_in())
        clock.advance(waits[-1])
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert poller.breaker == BREAKER_CLOSED and len(plugin.calls) == 6
    # a success goes back to the normal interval
    plugin.mode = "good"
    poller.poll_once()
    assert poller.due_in() == 10.0
    # a short ``sleep`` bounds the first retry too
    short = make(ScriptedPlugin(clock, mode="fail"), sleep=0.5, breaker_failures=100, clock=clock)
    short.poll_once()
    assert short.due_in() == pytest.approx(0.5)
    # a wake-up never brings a retry closer than min(sleep, 1s)
    poller.failures = 5
    poller.wake()
    assert poller.due_in() == 1.0


def test_backoff_and_breaker_wait_in_the_poller_thread():
    """The poller thread queries exactly when due_in() says, not before (real time here)."""
    plugin = ScriptedPlugin(mode="fail")
    poller = make(plugin, sleep=0.3, breaker_failures=2, breaker_cooldown=0.6)
    with running(poller):
        wait_for(lambda: poller.breaker == BREAKER_OPEN, what="breaker open")
        wait_for(lambda: len(plugin.calls) >= 3, what="the probe")
        first, retry, probe = plugin.calls[:3]
        slack = 0.05  # the call times are taken inside the call, a moment after the wait ends
        assert retry - first >= 0.3 - slack and probe - retry >= 0.6 - slack


def test_not_a_dict_is_a_failure():
    plugin = ScriptedPlugin(mode="notadict")
    poller = make(plugin)
    poller.poll_once()
    assert poller.snapshot is None and "not a dict" in poller.last_error
    assert poller.get("q1")[0] is None


def test_half_open_probe_failure_reopens_immediately():
    plugin = ScriptedPlugin(mode="fail")
    poller = make(plugin, breaker_failures=5)
    poller.breaker = BREAKER_HALF_OPEN
    poller.poll_once()
    assert poller.breaker == BREAKER_OPEN and poller.failures == 1


def test_wake_ups_are_merged():
    clock = FakeClock()
    plugin = ScriptedPlugin(clock)
    poller = make(plugin, sleep=30.0, clock=clock)
    with running(poller):
        wait_for(lambda: len(plugin.calls) >= 1, what="first poll")
        assert poller.due_in() == 30.0
        # fifty wake-ups: one extra query, 1s after the first (not 30s, not fifty)
        for _ in range(50):
            poller.wake()
        assert poller.due_in() == 1.0
        clock.advance(0.5)
        poller.wake()
        time.sleep(0.2)  # the thread had its chance
        assert len(plugin.calls) == 1
        clock.advance(0.5)
        poller.wake()
        wait_for(lambda: len(plugin.calls) >= 2, what="woken poll")
        assert plugin.calls[1] - plugin.calls[0] == 1.0
        # served: back to the normal interval
        assert poller.due_in() == 30.0


def test_timed_caller_passes_results_and_errors():
    call = TimedCaller("t")
    assert call(lambda: 42, 1.0) == 42
    with pytest.raises(ZeroDivisionError):
        call(lambda: 1 / 0, 1.0)
