"""A real factory with PanDA failing, an expired credential and pilots that exit 1:
``apf status`` and the API agree on every queue's health, and ``apf status`` exits like a monitoring check."""

from __future__ import annotations

import json
import time

import requests

from autopyfactory.cli import apf
from autopyfactory.factory import Factory
from tests.conftest import local_queue, wait_for
from tests.test_credentials import PROXY_LOCAL, jwt
from tests.test_panda_factory import FAST, panda_queue
from tests.web_support import free_port


def queues_conf(confdir, panda_url: str, broken: bool) -> str:
    healthy = (panda_queue("PANDA_Q", panda_url)
               + local_queue("OK_Q", confdir.spool, executable="/bin/true")
               + local_queue("OLD_Q", confdir.spool, enabled="False"))
    if not broken:
        return healthy
    return healthy + (
        local_queue("TOKEN_Q", confdir.spool, executable="/bin/true", **{"batchsubmit.proxylocal.proxy": "tok"})
        .replace("batchsubmitplugin = Local", "batchsubmitplugin = ProxyLocal")
        + local_queue("FAULT_Q", confdir.spool, executable="/bin/false"))


def apf_status(capsys, url: str, *argv: str) -> tuple[int, str]:
    code = apf.main(["status", "--url", url, *argv])
    out, err = capsys.readouterr()
    assert code == 3 or not err, err
    return code, out


def agreed_health(capsys, url: str) -> tuple[int, dict[str, str], str]:
    """(exit code, {queue: health}) of ``apf status --json``, once the API says the same before and after."""
    def agree():
        before = {q["name"]: q["health"] for q in requests.get(url + "/api/v1/queues", timeout=30).json()["queues"]}
        code, out = apf_status(capsys, url, "--json")
        status = {q["name"]: q["health"] for q in json.loads(out)["queues"]}
        after = {q["name"]: q["health"] for q in requests.get(url + "/api/v1/queues", timeout=30).json()["queues"]}
        return (code, status) if before == status == after else None
    return wait_for(agree, what="apf status and the API to agree")


def test_apf_status_and_the_api_agree_and_exit_codes_follow_health(confdir, panda, tmp_path, capsys):
    panda.mode = "http500"
    token = tmp_path / "token"
    token.write_text(jwt(time.time() - 60))  # expired a minute ago
    confdir.dropin("proxylocal.py", PROXY_LOCAL)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    factory_keys = f"logserver.enabled = True\nlogserver.port = {port}\n{FAST}"
    confdir.write(queues_conf(confdir, panda.url, broken=True), factory=factory_keys,
                  auth=f"[tok]\nplugin = Token\ntoken.tokenfile = {token}\n")
    for name in ("OK_Q", "TOKEN_Q", "FAULT_Q"):
        confdir.work(name, 2)
    config = confdir.load()
    factory = Factory(config)
    factory.start()
    try:
        wanted = {"PANDA_Q": {"critical"}, "TOKEN_Q": {"critical"}, "FAULT_Q": {"warning", "critical"},
                  "OK_Q": {"ok"}, "OLD_Q": {"disabled"}}

        def broken():
            views = {q["name"]: q for q in requests.get(url + "/api/v1/queues", timeout=30).json()["queues"]}
            return views if all(views[n]["health"] in levels for n, levels in wanted.items()) else None

        views = wait_for(broken, what="each queue at its expected health")
        assert "WMS status unknown" in views["PANDA_Q"]["health_reason"]
        assert "credential tok not usable" in views["TOKEN_Q"]["health_reason"]
        assert "fault" in views["FAULT_Q"]["health_reason"]

        code, health = agreed_health(capsys, url)
        assert code == 2 and set(health) == set(wanted)
        code, out = apf_status(capsys, url)
        assert code == 2
        table = out.split("\n\n")[1].splitlines()
        assert [line.split()[1] for line in table[2:4]] == ["critical", "critical"]  # problems first
        assert table[-1].split()[:2] == ["OLD_Q", "disabled"]
        endpoint = next(line for line in out.splitlines() if line.startswith(panda.url.split("/api")[0]))
        assert "FAILING" in endpoint and "HTTP 500" in endpoint and len(endpoint) < 200  # one short line
        assert apf_status(capsys, url, "OK_Q")[0] == 0
        assert apf_status(capsys, url, "OLD_Q")[0] == 0
        def fault_q_agrees():  # FAULT_Q goes from warning to critical as its pilots fault: read both close together
            code = apf_status(capsys, url, "FAULT_Q")[0]
            level = requests.get(url + "/api/v1/queues/FAULT_Q", timeout=30).json()["health"]
            return code == {"warning": 1, "critical": 2}[level]

        wait_for(fault_q_agrees, what="apf status FAULT_Q's exit code to follow its health")
        assert apf_status(capsys, url, "NOPE")[0] == 3

        # all is well: PanDA answers again, the broken queues are gone from the configuration
        panda.mode = "good"
        (confdir.root / "queues.conf").write_text(queues_conf(confdir, panda.url, broken=False))
        assert factory.reload() == []
        wait_for(lambda: requests.get(url + "/api/v1/queues/PANDA_Q", timeout=30).json()["health"] == "ok",
                 what="PANDA_Q ok once PanDA answers")
        code, health = agreed_health(capsys, url)
        assert code == 0 and health == {"PANDA_Q": "ok", "OK_Q": "ok", "OLD_Q": "disabled"}
    finally:
        factory.stop()
    assert apf_status(capsys, url)[0] == 3  # nobody answers
