"""``GET /api/v1/admin/threads`` and ``/debug`` with ``apf threads`` / ``apf debug``: a remote operator's
SIGUSR1 and "what exactly runs there", behind the admin token and in the audit trail."""

from __future__ import annotations

import json

import pytest
import requests

from autopyfactory import __version__
from autopyfactory.cli import apf
from tests.web_support import start_factory


@pytest.fixture
def running(confdir):
    run = start_factory(confdir, {"ALPHA": 1, "BETA": 0})
    yield run
    run.stop()


def apf_run(capsys, run, *argv: str) -> tuple[int, str, str]:
    code = apf.main([*argv, "--conf", str(run.confdir.root / "factory.conf")])
    out, err = capsys.readouterr()
    return code, out, err


def test_threads_shows_the_cycle_workers_with_their_stacks_and_every_queue(running, capsys):
    code, out, err = apf_run(capsys, running, "threads")
    assert code == 0, err
    # a stack, not just names: a worker waits for the next due queue, or runs one as queue:<name>
    worker = out.split("--- thread cycles-1", 1)[1].split("--- thread", 1)[0]
    assert "in _take" in worker or "in step" in worker, worker
    assert "cycle workers: " in out
    assert "queue ALPHA: alive=True" in out and "queue BETA: alive=True" in out
    answer = requests.get(f"{running.url}/api/v1/admin/threads", headers=running.admin_headers(), timeout=10).json()
    assert answer["threads"] == sum(1 for line in answer["dump"] if line.startswith("--- thread "))
    assert answer["threads"] >= 3


def test_debug_names_versions_sources_endpoints_and_store(running, capsys):
    code, out, err = apf_run(capsys, running, "debug", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["versions"]["autopyfactory"] == __version__
    assert info["versions"]["requests"] == requests.__version__
    assert info["config_sources"]["factory_conf"] == str(running.confdir.root / "factory.conf")
    assert any(source.endswith(".conf") for source in info["config_sources"]["queues"])
    assert {e["kind"] for e in info["endpoints"]} == {"wmsstatus", "batchstatus"}
    store = info["store"]
    assert store["usable"] and store["bytes"] > 0
    code, out, err = apf_run(capsys, running, "debug")
    assert code == 0, err
    assert f"autopyfactory {__version__}" in out and "store: " in out and "endpoints:" in out


@pytest.mark.parametrize("action", ["threads", "debug"])
def test_without_the_token_nothing_is_shown_and_the_refusal_is_audited(running, action):
    for headers in ({}, running.admin_headers("not-the-token-at-all")):
        answer = requests.get(f"{running.url}/api/v1/admin/{action}", headers=headers, timeout=10)
        assert answer.status_code == 401
        assert set(answer.json()) == {"error"}
    ok = requests.get(f"{running.url}/api/v1/admin/{action}", headers=running.admin_headers(), timeout=10)
    assert ok.status_code == 200
    audit = [(a.action, a.result) for a in running.factory.store.admin_actions(10)]
    assert audit.count((action, "refused")) == 2 and (action, "ok") in audit
