"""Queue health: one definition of critical, warning, paused, drained, ok, tried level by level."""

from __future__ import annotations

import time

from autopyfactory.health import LEVELS, Health, one_line, queue_health
from autopyfactory.queue import Pause


def test_levels_sort_worst_first():
    ranks = sorted([Health("ok", ""), Health("critical", ""), Health("paused", ""), Health("warning", "")],
                   key=lambda h: h.rank)
    assert [h.level for h in ranks] == ["critical", "warning", "paused", "ok"]
    assert LEVELS[0] == "critical" and LEVELS[-1] == "disabled"


def test_one_line_cuts_long_multiline_errors():
    text = "HTTPSConnectionPool(host='x', port=25443): Max retries exceeded\n" + "with url " * 60
    line = one_line(text)
    assert "\n" not in line and len(line) <= 160 and line.endswith("…")


class FakeRecord:
    def __init__(self, wms=None, batch=None, holds=(), errors=(), started=None):
        self.wms, self.batch = wms, batch
        self.holds, self.errors = list(holds), list(errors)
        self.started = time.time() if started is None else started
        self.duration = 0.1


class Submitter:
    def __init__(self):
        self.credential_profile = ""


class Context:
    def __init__(self):
        self.credentials = None


class View:
    """A queue's state as health reads it (APFQueue's attributes)."""

    def __init__(self, record=None, finished=None):
        self.pause = None
        self.fault_backoff = None
        self.started = True
        self.alive = True
        self.stopping = False
        self.ran_its_cycles = False
        self.died = None
        self.last_record = record
        self.sleep = 60.0
        self.submitter = Submitter()
        self.context = Context()
        self._finished = finished

    def finished_counts(self, since):
        return self._finished


def test_unknown_wms_status_is_critical_with_the_reason():
    record = FakeRecord(wms=None, batch={}, holds=["WMS status unknown (PanDA 500 Server Error): submitting 0"])
    health = queue_health(View(record))
    assert health.level == "critical" and "PanDA 500" in health.reason


def test_unknown_batch_status_is_critical():
    health = queue_health(View(FakeRecord(wms={}, batch=None)))
    assert health == Health("critical", "batch status unknown")


def test_cycle_error_fault_backoff_and_dead_thread_are_critical():
    assert queue_health(View(FakeRecord(wms={}, batch={}, errors=["Slurm failed: sbatch: error"]))).level == "critical"
    view = View(FakeRecord(wms={}, batch={}))
    view.fault_backoff = "9 of 10 pilots faulted: one probe pilot per cycle"
    assert queue_health(view) == Health("critical", view.fault_backoff)
    view = View(FakeRecord(wms={}, batch={}))
    view.alive = False
    assert queue_health(view).reason == "queue thread is not running"
    view.ran_its_cycles = True  # --cycles N ended it, as asked
    assert queue_health(view).level == "ok"


def test_pause_and_drain_win_over_everything_with_reason_and_end():
    view = View(FakeRecord(wms=None, batch=None))
    view.pause = Pause("drained", reason="site downtime", until=0.0 + 86400)
    health = queue_health(view)
    assert health.level == "drained"
    assert "site downtime" in health.reason and "1970-01-02T00:00:00Z" in health.reason


def test_faults_in_the_last_hour_and_overdue_cycles_are_warnings():
    health = queue_health(View(FakeRecord(wms={}, batch={}), finished={"done": 7, "fault": 3}))
    assert health == Health("warning", "3 of 10 pilots that ended in the last hour faulted")
    old = FakeRecord(wms={}, batch={}, started=time.time() - 1000)
    assert queue_health(View(old, finished={"done": 1, "fault": 0})).level == "warning"


def test_healthy_queue_is_ok():
    assert queue_health(View(None)).level == "ok"
    assert queue_health(View(FakeRecord(wms={}, batch={}), finished={"done": 5, "fault": 0})).level == "ok"


class Credentials:
    def __init__(self, state):
        self.state = state

    def status(self, profile):
        return self.state


def test_credential_states_name_the_profile():
    from autopyfactory.info import CredentialStatus

    view = View(FakeRecord(wms={}, batch={}))
    view.submitter.credential_profile = "tok"
    view.context.credentials = Credentials(CredentialStatus("tok", False, 0.0, "token expired 60 s ago"))
    assert queue_health(view) == Health("critical", "credential tok not usable: token expired 60 s ago")
    view.context.credentials = Credentials(CredentialStatus("tok", True, 3600.0, "fine"))
    assert queue_health(view) == Health("warning", "credential tok expires in 1.0 h")
    view.context.credentials = Credentials(None)
    assert queue_health(view) == Health("critical", "credential tok not usable: not checked yet")
