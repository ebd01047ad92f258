"""StatusPoller failure handling: deadline, retry with backoff, circuit breaker, health."""

from __future__ import annotations

import threading
import time

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


class ScriptedPlugin:
    """A status plugin whose next answers are scripted: a dict, an exception, or 'hang'."""

    name = "Scripted"

    def __init__(self):
        self.calls: list[float] = []
        self.mode = "good"
        self.release = threading.Event()
        self.lock = threading.Lock()

    def poll(self, queues):
        with self.lock:
            self.calls.append(time.time())
        if self.mode == "fail":
            raise ConnectionError("endpoint down")
        if self.mode == "hang":
            self.release.wait(30)
        if self.mode == "notadict":
            return ["q1"]
        return {q: WMSQueueInfo(ready=1) for q in queues} | {"odd": Unknown("site missing from data")}


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
    plugin = ScriptedPlugin()
    plugin.mode = "fail"
    poller = make(plugin, breaker_failures=3, breaker_cooldown=2.0)
    poller.start()
    try:
        wait_for(lambda: poller.breaker == BREAKER_OPEN, what="breaker open")
        calls_at_open = len(plugin.calls)
        assert calls_at_open == 3
        health = poller.health()
        assert health["breaker"] == "open" and health["consecutive_failures"] == 3
        assert health["last_error"] == "ConnectionError: endpoint down"
        assert health["breaker_until"] > time.time() - 0.5
        # wake-ups do not shorten the cool-down
        for _ in range(5):
            poller.wake()
        time.sleep(0.3)
        if poller.breaker == BREAKER_OPEN:
            assert len(plugin.calls) == calls_at_open
        assert "circuit breaker open" in poller.get("q1")[2]
        # the probe fails: open again, one call per cool-down
        wait_for(lambda: len(plugin.calls) >= 4, what="probe")
        wait_for(lambda: poller.breaker == BREAKER_OPEN and poller.failures == 4, what="re-open")
        plugin.mode = "good"
        wait_for(lambda: poller.breaker == BREAKER_CLOSED, what="breaker closed")
        assert poller.failures == 0 and poller.get("q1")[0] == WMSQueueInfo(ready=1)
        health = poller.health()
        assert health["healthy"] and health["last_success"] is not None
        assert health["failures_total"] >= 4 and health["breaker_opened"] >= 2
        assert health["last_error"] == "ConnectionError: endpoint down"  # kept for the status page
    finally:
        poller.stop()
        poller.join(5)


def test_hard_deadline_on_a_hanging_plugin_and_no_pile_up():
    plugin = ScriptedPlugin()
    plugin.mode = "hang"
    poller = make(plugin, call_timeout=0.3, breaker_failures=10)
    started = time.time()
    poller.poll_once()
    assert time.time() - started < 5
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
    plugin = ScriptedPlugin()
    plugin.mode = "hang"
    poller = make(plugin, call_timeout=0.3, breaker_failures=10)
    poller.poll_once()
    assert poller.get("q1")[0] is None
    plugin.mode = "good"
    poller.poll_once()
    assert poller.failures == 0 and poller.get("q1")[0] == WMSQueueInfo(ready=1)
    assert poller.health()["abandoned_calls"] == 1  # still hanging, reported
    plugin.release.set()
    wait_for(lambda: poller.health()["abandoned_calls"] == 0, what="the hung call to end")


def test_retry_backoff_is_in_the_poller_thread_and_bounded_by_sleep():
    plugin = ScriptedPlugin()
    plugin.mode = "fail"
    poller = make(plugin, sleep=0.5, breaker_failures=100)
    poller.poll_once()
    assert poller._next_wait() == pytest.approx(0.5)  # min(sleep, 1s)
    big = make(ScriptedPlugin(), sleep=100.0, breaker_failures=100)
    big.failures = 1
    assert big._next_wait() == 1.0
    big.failures = 3
    assert big._next_wait() == 4.0
    big.failures = 30
    assert big._next_wait() == 100.0
    big.failures = 0
    assert big._next_wait() == 100.0


def test_not_a_dict_is_a_failure():
    plugin = ScriptedPlugin()
    plugin.mode = "notadict"
    poller = make(plugin)
    poller.poll_once()
    assert poller.snapshot is None and "not a dict" in poller.last_error
    assert poller.get("q1")[0] is None


def test_half_open_probe_failure_reopens_immediately():
    plugin = ScriptedPlugin()
    poller = make(plugin, breaker_failures=5)
    plugin.mode = "fail"
    poller.breaker = BREAKER_HALF_OPEN
    poller.poll_once()
    assert poller.breaker == BREAKER_OPEN and poller.failures == 1


def test_wake_ups_are_merged():
    plugin = ScriptedPlugin()
    poller = make(plugin, sleep=30.0)
    poller.start()
    try:
        wait_for(lambda: len(plugin.calls) >= 1, what="first poll")
        for _ in range(50):
            poller.wake()
            time.sleep(0.01)
        # fifty wake-ups within half a second: at most one extra query (>= 1s after the first)
        time.sleep(0.3)
        assert len(plugin.calls) <= 2
        wait_for(lambda: len(plugin.calls) >= 2, what="woken poll")
        assert plugin.calls[1] - plugin.calls[0] >= 0.9
    finally:
        poller.stop()
        poller.join(5)


def test_timed_caller_passes_results_and_errors():
    call = TimedCaller("t")
    assert call(lambda: 42, 1.0) == 42
    with pytest.raises(ZeroDivisionError):
        call(lambda: 1 / 0, 1.0)
