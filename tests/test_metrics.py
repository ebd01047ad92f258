"""/metrics of a real factory: Prometheus conventions (promtool and naming rules), and what each family says."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from autopyfactory.health import LEVELS
from tests.conftest import wait_for
from tests.web_support import RunningFactory, start_factory

DOC = Path(__file__).parent.parent / "docs" / "web.md"
UNITS = ("_seconds", "_bytes", "_total", "_ratio", "_info")
# gauges that count things (pilots, jobs, failures) or are 0/1 states carry no unit
COUNTS = {"apf_queue_pilots", "apf_queue_pilots_finished", "apf_wms_jobs", "apf_queue_health", "apf_queue_paused",
          "apf_credential_ok", "apf_endpoint_up", "apf_endpoint_consecutive_failures", "apf_endpoint_breaker_state",
          "apf_last_reload_success", "process_open_fds", "process_max_fds",
          "apf_credential_seconds_left"}  # a duration in seconds; the name is part of the factory's contract


@pytest.fixture
def metrics_factory(confdir):
    run = start_factory(confdir, {"ALPHA": 3, "BETA": 0})
    yield run
    run.stop()


def scrape(run: RunningFactory) -> str:
    answer = requests.get(run.url + "/metrics", timeout=30)
    assert answer.status_code == 200
    return answer.text


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels) -> float:
    found = samples(text).get((name, tuple(sorted(labels.items()))))
    assert found is not None, f"{name}{labels} not in /metrics"
    return found


def settled(run: RunningFactory) -> str:
    """A scrape taken once ALPHA has 2 pilots running and BETA has cycled twice."""
    def ready():
        text = scrape(run)
        have = samples(text)
        return text if (have.get(("apf_queue_pilots", (("queue", "ALPHA"), ("state", "running")))) == 2
                        and have.get(("apf_cycles_total", (("queue", "BETA"),)), 0) >= 2) else None
    return wait_for(ready, what="ALPHA running 2 pilots")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (tests/services/promtool.sh)")
def test_promtool_finds_nothing_to_complain_about(metrics_factory):
    text = settled(metrics_factory)
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr


def test_names_follow_the_conventions_and_are_documented(metrics_factory):
    text = settled(metrics_factory)
    families = list(text_string_to_metric_families(text))
    documented = set(re.findall(r"`((?:apf|process)_[a-z_]+)", DOC.read_text()))
    seen = set()
    for family in families:
        name = family.name
        seen.add(name)
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert family.documentation, f"{name} has no HELP"
        if family.type == "counter":
            assert any(s.name == name + "_total" for s in family.samples), f"counter {name} without _total"
        elif name not in COUNTS:
            assert name.endswith(UNITS), f"{name} has no unit suffix"
        for sample in family.samples:
            assert all(re.fullmatch(r"[a-z_]+", label) for label in sample.labels), sample
            assert "(" not in sample.labels.get("endpoint", ""), f"endpoint label is not readable: {sample}"
        if name.startswith("apf_"):
            assert name in documented or name + "_total" in documented, f"{name} missing in docs/web.md"
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"} <= seen


def test_what_the_families_say(metrics_factory):
    text = settled(metrics_factory)
    queue = metrics_factory.factory.queues["ALPHA"]
    # batch states only; windowed done/fault have their own family
    states = {dict(labels)["state"] for name, labels in samples(text) if name == "apf_queue_pilots"}
    assert states == {"pending", "running", "exiting", "held"}
    assert value(text, "apf_queue_pilots_finished", queue="ALPHA", result="fault") == 0
    # the WMS's own numbers: 3 items, 2 claimed by running pilots
    wms, _, _ = queue.wms_poller.get("ALPHA")
    assert value(text, "apf_wms_jobs", queue="ALPHA", state="ready") == wms.ready
    # one level at 1 per queue, the one the API shows
    api = requests.get(metrics_factory.url + "/api/v1/queues/ALPHA", timeout=30).json()
    assert [lv for lv in LEVELS if value(text, "apf_queue_health", queue="ALPHA", level=lv) == 1] == [api["health"]]
    # a histogram of cycle durations: one observation per cycle
    count = value(text, "apf_cycle_duration_seconds_count", queue="ALPHA")
    assert count == value(text, "apf_cycle_duration_seconds_bucket", queue="ALPHA", le="+Inf") >= 2
    assert count >= value(text, "apf_cycles_total", queue="ALPHA") - 1
    assert value(text, "apf_cycle_duration_seconds_sum", queue="ALPHA") > 0
    # endpoints by readable name, breaker state as a state set
    spool = str(metrics_factory.confdir.spool)
    assert value(text, "apf_endpoint_up", kind="wmsstatus", endpoint=spool) == 1
    assert value(text, "apf_endpoint_breaker_state", kind="wmsstatus", endpoint=spool, state="closed") == 1
    assert value(text, "apf_endpoint_breaker_state", kind="wmsstatus", endpoint=spool, state="open") == 0
    assert value(text, "apf_endpoint_failures_total", kind="batchstatus", endpoint="local") == 0
    # no reload yet: no reload samples; after one, its time and outcome
    assert not [k for k in samples(text) if k[0].startswith("apf_last_reload")]
    assert metrics_factory.factory.reload() == []
    text = scrape(metrics_factory)
    assert value(text, "apf_last_reload_success") == 1
    assert value(text, "apf_last_reload_timestamp_seconds") == pytest.approx(metrics_factory.factory.last_reload["time"])
