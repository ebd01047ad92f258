"""The Panda WMS plugin against a real PanDA server (tests/pandainstance.py): the jobs are real
jobs submitted through the server's submit API, the answers the server's own.

Each test uses sites of its own (the server is shared by the session). The
PanDA double (tests/panda_double.py) stays for faults a real server does not
produce; ``test_the_double_answers_like_the_real_server`` keeps it honest.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from autopyfactory.context import FactoryContext
from autopyfactory.credentials import CredentialService
from autopyfactory.info import WMSQueueInfo
from autopyfactory.plugins.wmsstatus.panda import Panda, PandaError
from tests.conftest import wait_for
from tests.panda_double import PandaDouble
from tests.pandainstance import PandaServer
from tests.test_panda_plugin import PROXY_DROPIN, panda_queue, plugin_for


def site(name: str) -> str:
    return f"APF_{name}_{uuid.uuid4().hex[:6].upper()}"


def plugin(confdir, server: PandaServer, **keys: str) -> Panda:
    """The Panda plugin on ``server`` with the pilot certificate as the factory's proxy profile."""
    confdir.dropin("fileproxy.py", PROXY_DROPIN)
    auth = f"[panda]\nplugin = FileProxy\nfileproxy.path = {server.pki / 'proxy.pem'}\n"
    options = {"wmsstatus.panda.proxy": "panda", "wmsstatus.panda.capath": str(server.cadir),
               "wmsstatus.panda.timeout": "20", **keys}
    confdir.write(panda_queue("q", server.api, **{k: v for k, v in options.items() if v is not None}), auth=auth)
    config = confdir.load()
    context = FactoryContext(config)
    context.credentials = CredentialService(context)
    context.credentials.check_all()
    return Panda(config.queues["q"].plugin_options(Panda), context)


def activated(server: PandaServer, ids: list[int]) -> None:
    """Wait until the server has activated the jobs (the setupper runs after the submit answer)."""
    wait_for(lambda: set(server.job_states(ids).values()) == {"activated"},
             f"jobs {ids} to be activated", timeout=60, every=0.3)
    server.refresh_stats()


def acquire(server: PandaServer, where: str, who: str = "pilot") -> dict:
    """What a pilot asks: one job for ``where``."""
    return server.post("/api/v1/pilot/acquire_jobs",
                       {"site_name": where, "prod_source_label": "managed", "node": "wn1"}, who=who)


def test_activated_and_running_jobs_of_a_site(confdir, panda_server):
    a, b = site("A"), site("B")
    ids = panda_server.submit(a, 3) + panda_server.submit(b, 2)
    activated(panda_server, ids)
    wms = plugin(confdir, panda_server)
    assert wms.poll([a, b]) == {a: WMSQueueInfo(ready=3), b: WMSQueueInfo(ready=2)}

    # a pilot takes one job of A: sent (running for the factory), the others still wait
    answer = acquire(panda_server, a)
    assert answer["success"] is True, answer
    taken = [job["PandaID"] for job in answer["data"]["jobs"]]
    assert len(taken) == 1 and taken[0] in ids
    panda_server.refresh_stats()
    assert wms.poll([a, b]) == {a: WMSQueueInfo(ready=2, running=1), b: WMSQueueInfo(ready=2)}
    wms.context.close()


def test_a_site_without_active_jobs_has_zero(confdir, panda_server):
    busy, idle = site("BUSY"), site("IDLE")
    panda_server.add_site(idle)
    activated(panda_server, panda_server.submit(busy, 1))
    wms = plugin(confdir, panda_server)
    result = wms.poll([busy, idle])
    assert result[idle] == WMSQueueInfo()  # absent from a good answer: no jobs, not unknown
    assert result[busy] == WMSQueueInfo(ready=1)
    wms.context.close()


def test_the_user_certificate_gets_no_production_job(panda_server):
    where = site("USER")
    ids = panda_server.submit(where, 1)
    activated(panda_server, ids)
    refused = acquire(panda_server, where, who="user")
    assert not (refused.get("data") or {}).get("jobs"), refused
    assert panda_server.job_states(ids) == {ids[0]: "activated"}
    # and a client without a certificate is refused by TLS itself
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(panda_server.url + "/server/panda/isAlive", verify=str(panda_server.pki / "ca.pem"),
                     timeout=30)


def test_the_server_is_verified_with_the_grid_ca_directory_and_refused_without_it(confdir, panda_server,
                                                                                  monkeypatch):
    where = site("TLS")
    activated(panda_server, panda_server.submit(where, 1))
    # the test CA only in a hashed directory, found as grid tools find theirs: X509_CERT_DIR
    assert [p.name for p in panda_server.cadir.iterdir() if p.name.endswith(".0")]
    monkeypatch.setenv("X509_CERT_DIR", str(panda_server.cadir))
    grid = plugin(confdir, panda_server, **{"wmsstatus.panda.capath": None})
    assert grid.poll([where]) == {where: WMSQueueInfo(ready=1)}
    grid.context.close()
    # the explicit key names the same directory
    explicit = plugin(confdir, panda_server, **{"wmsstatus.panda.capath": str(panda_server.cadir)})
    assert explicit.poll([where]) == {where: WMSQueueInfo(ready=1)}
    explicit.context.close()
    # without it (system CAs, which do not know the test CA): a clear error naming the CAs tried
    monkeypatch.delenv("X509_CERT_DIR")
    blind = plugin(confdir, panda_server, **{"wmsstatus.panda.capath": None})
    with pytest.raises(PandaError, match=r"certificate verify failed") as caught:
        blind.poll([where])
    assert "checked against" in str(caught.value)
    blind.context.close()


def test_server_stopped_and_restarted(confdir, panda_server):
    where = site("RESTART")
    activated(panda_server, panda_server.submit(where, 2))
    wms = plugin(confdir, panda_server, **{"wmsstatus.panda.timeout": "5"})
    assert wms.poll([where]) == {where: WMSQueueInfo(ready=2)}
    panda_server.stop_server()
    try:
        with pytest.raises(PandaError, match=r"ConnectionError.*(refused|Max retries)") as caught:
            wms.poll([where])
        assert panda_server.api in str(caught.value)
    finally:
        panda_server.start_server()
    assert wms.poll([where]) == {where: WMSQueueInfo(ready=2)}  # the jobs were kept in the database
    wms.context.close()


def test_an_empty_database_answers_success_false(confdir, panda_server):
    panda_server.wipe_jobs()
    raw = panda_server.get("/api/v1/statistics/active_job_stats_by_site").json()
    assert raw["success"] is False
    wms = plugin(confdir, panda_server)
    with pytest.raises(PandaError, match=r"success is False: .*job statistics"):
        wms.poll([site("ANY")])
    wms.context.close()


def test_the_double_answers_like_the_real_server(confdir, panda_server):
    """Same jobs, same answer: the double's shape, values and failure answer are the real server's."""
    a, b = site("SAME"), site("SAME")
    ids = panda_server.submit(a, 2) + panda_server.submit(b, 1)
    activated(panda_server, ids)
    assert acquire(panda_server, a)["success"] is True  # one of A sent
    panda_server.refresh_stats()
    real = panda_server.get("/api/v1/statistics/active_job_stats_by_site").json()
    assert set(real) == {"success", "message", "data"} and real["success"] is True

    double = PandaDouble()
    double.stats = {"success": True, "message": "", "data": {}}
    double.set_site(a, activated=1, sent=1)
    double.set_site(b, activated=1)
    double.up()
    try:
        imitation = requests.get(double.url + "/statistics/active_job_stats_by_site", timeout=30).json()
        assert {k: type(v) for k, v in imitation.items()} == {k: type(v) for k, v in real.items()}
        assert {s: real["data"][s] for s in (a, b)} == {s: imitation["data"][s] for s in (a, b)}
        assert all(type(n) is int for counts in real["data"].values() for n in counts.values())
        from_real = plugin(confdir, panda_server).poll([a, b])
        assert from_real == {a: WMSQueueInfo(ready=1, running=1), b: WMSQueueInfo(ready=1)}
        from_double, context = plugin_for(confdir, panda_queue("q", double.url))
        assert from_double.poll([a, b]) == from_real
        context.close()

        # the failure answer of an empty database, as the double's "false" mode gives it
        panda_server.wipe_jobs()
        real_false = panda_server.get("/api/v1/statistics/active_job_stats_by_site").json()
        double.mode = "false"
        double_false = requests.get(double.url + "/statistics/active_job_stats_by_site", timeout=30).json()
        assert set(real_false) == set(double_false) and real_false["success"] is double_false["success"] is False
        assert isinstance(real_false["message"], str) and real_false["message"]
        assert json.dumps(real_false["data"]) in ("null", "{}", "[]")
    finally:
        double.close()
