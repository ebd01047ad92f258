"""The Panda WMS plugin against a PanDA double (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import tracemalloc

import pytest

from autopyfactory.config import ConfigError
from autopyfactory.context import FactoryContext
from autopyfactory.info import WMSQueueInfo
from autopyfactory.plugins.wmsstatus.panda import Panda, PandaError
from autopyfactory.status import StatusPoller, Unknown

QUEUES = ["CERN-PROD_UCORE", "BNL_PROD_UCORE", "ANALY_MWT2_UCORE", "TEST_SITE_A", "TEST_SITE_B"]



def panda_queue(name: str, url: str, **extra: str) -> str:
    lines = [f"[{name}]", "wmsstatusplugin = Panda", f"wmsstatus.panda.url = {url}",
             "batchstatusplugin = Local", "batchsubmitplugin = Local"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n\n"


def plugin_for(confdir, queues_text: str, auth: str = "") -> tuple[Panda, FactoryContext]:
    confdir.write(queues_text, auth=auth)
    config = confdir.load()
    context = FactoryContext(config)
    queue = next(iter(config.queues.values()))
    return Panda(queue.plugin_options(Panda), context), context


def test_recorded_answer_maps_panda_states(confdir, panda):
    plugin, context = plugin_for(confdir, panda_queue("q", panda.url))
    result = plugin.poll(QUEUES)
    assert result["CERN-PROD_UCORE"] == WMSQueueInfo(notready=9, ready=12, running=350, done=100, failed=4)
    assert result["BNL_PROD_UCORE"] == WMSQueueInfo(notready=52, ready=250, running=1820, done=900, failed=31)
    # unknown job states ("merging") are not counted; no queue info URL: online
    assert result["TEST_SITE_A"] == WMSQueueInfo(notready=2, ready=3, running=1, status="online")
    assert panda.count() == 1
    context.close()


def test_queue_status_from_queue_information(confdir, panda):
    plugin, context = plugin_for(
        confdir, panda_queue("q", panda.url, **{"wmsstatus.panda.queueinfourl": panda.queueinfo_url}))
    result = plugin.poll(QUEUES + ["NOT_IN_CRIC"])
    assert {q: result[q].status for q in QUEUES} == {
        "CERN-PROD_UCORE": "online", "BNL_PROD_UCORE": "brokeroff", "ANALY_MWT2_UCORE": "test",
        "TEST_SITE_A": "online", "TEST_SITE_B": "offline"}
    assert isinstance(result["NOT_IN_CRIC"], Unknown)
    assert "queue information" in result["NOT_IN_CRIC"].reason
    assert panda.count("/queueinfo") == 1
    context.close()


@pytest.mark.parametrize("mode, message", [
    ("http500", "HTTP 500"),
    ("false", "success is False: database connection lost"),
    ("emptydata", "'data' is empty"),
    ("truncated", "not valid JSON"),
    ("cut", "ChunkedEncodingError"),
    ("notjson", "not valid JSON"),
    ("pickle", "never unpickled"),
])
def test_bad_answers_raise_with_a_clear_message(confdir, panda, mode, message):
    plugin, context = plugin_for(confdir, panda_queue("q", panda.url, **{"wmsstatus.panda.timeout": "2"}))
    panda.mode = mode
    with pytest.raises(PandaError, match=message.replace("(", r"\(")) as caught:
        plugin.poll(QUEUES)
    assert panda.url in str(caught.value)
    context.close()


def test_site_missing_from_a_good_answer_has_zero_jobs(confdir, panda):
    # PanDA lists only sites with active jobs: an idle site is absent, not broken
    plugin, context = plugin_for(
        confdir, panda_queue("q", panda.url, **{"wmsstatus.panda.queueinfourl": panda.queueinfo_url}))
    panda.mode = "nosite"
    result = plugin.poll(QUEUES)
    assert result["TEST_SITE_A"] == WMSQueueInfo(status="online")
    assert result["TEST_SITE_B"] == WMSQueueInfo(status="offline")
    assert result["CERN-PROD_UCORE"] == WMSQueueInfo(notready=9, ready=12, running=350, done=100, failed=4)
    context.close()


@pytest.mark.parametrize("mode", ["http500", "false", "emptydata", "truncated"])
def test_site_missing_from_a_bad_answer_stays_unknown(confdir, panda, mode):
    # zero only when PanDA answered well: a failed answer never turns into "no jobs"
    plugin, context = plugin_for(confdir, panda_queue("q", panda.url, **{"wmsstatus.panda.timeout": "2"}))
    poller = StatusPoller("wmsstatus", plugin, "panda", sleep=60, maxage=60)
    poller.add_queue("IDLE_SITE")
    panda.mode = mode
    poller.poll_once()
    info, _, why = poller.get("IDLE_SITE")
    assert info is None and panda.url in why
    context.close()


def test_malformed_counts_are_unknown(confdir, panda):
    plugin, context = plugin_for(confdir, panda_queue("q", panda.url))
    panda.set_site("TEST_SITE_A", activated=-1)
    panda.set_site("TEST_SITE_B", activated="12")
    panda.stats["data"]["CERN-PROD_UCORE"] = [1, 2]
    result = plugin.poll(QUEUES)
    assert all(isinstance(result[q], Unknown) for q in ("TEST_SITE_A", "TEST_SITE_B", "CERN-PROD_UCORE"))
    assert isinstance(result["BNL_PROD_UCORE"], WMSQueueInfo)
    context.close()


def test_hang_longer_than_timeout(confdir, panda):
    plugin, context = plugin_for(confdir, panda_queue("q", panda.url, **{"wmsstatus.panda.timeout": "0.5"}))
    panda.mode = "hang"
    with pytest.raises(PandaError, match="ReadTimeout"):  # the double hangs far longer
        plugin.poll(QUEUES)
    context.close()


def test_huge_answer_stops_at_maxbytes_memory_bounded(confdir, panda):
    plugin, context = plugin_for(confdir, panda_queue("q", panda.url, **{"wmsstatus.panda.maxbytes": "2000000"}))
    panda.mode = "huge"
    tracemalloc.start()
    try:
        with pytest.raises(PandaError, match="larger than maxbytes 2000000"):
            plugin.poll(QUEUES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000, f"peak Python memory {peak / 1e6:.0f} MB reading a 50 MB answer"
    context.close()


def test_huge_well_formed_answer_parses_when_allowed(confdir, panda):
    plugin, context = plugin_for(confdir, panda_queue("q", panda.url, **{"wmsstatus.panda.maxbytes": "60000000"}))
    panda.mode = "huge"
    result = plugin.poll(["TEST_SITE_A"])
    assert result["TEST_SITE_A"].ready == 3
    context.close()


def test_token_file_is_sent_as_bearer(confdir, panda, tmp_path):
    token = tmp_path / "token"
    token.write_text("abc.def.ghi\n")
    plugin, context = plugin_for(confdir, panda_queue("q", panda.url, **{"wmsstatus.panda.tokenfile": str(token)}))
    plugin.poll(QUEUES)
    assert panda.headers[-1]["Authorization"] == "Bearer abc.def.ghi"
    token.unlink()
    with pytest.raises(PandaError, match="cannot read token file"):
        plugin.poll(QUEUES)
    context.close()


PROXY_DROPIN = '''
import os
from autopyfactory.config import Key
from autopyfactory.info import CredentialStatus
from autopyfactory.interfaces import AuthPlugin

class FileProxy(AuthPlugin):
    """A proxy file that is usable when it exists. Keys: fileproxy.path."""
    name = "FileProxy"
    keys = {"path": Key("path", "")}

    def check(self):
        path = self.options["path"]
        if not os.path.exists(path):
            return CredentialStatus(self.section.name, False, None, f"{path} does not exist", path)
        return CredentialStatus(self.section.name, True, 86400, "", path)
'''


def test_proxy_profile_gives_the_client_certificate_or_unknown(confdir, panda, tmp_path):
    from autopyfactory.credentials import CredentialService

    confdir.dropin("fileproxy.py", PROXY_DROPIN)
    proxy = tmp_path / "x509up"
    auth = f"[atlas]\nplugin = FileProxy\nfileproxy.path = {proxy}\n"
    plugin, context = plugin_for(confdir, panda_queue("q", panda.url, **{"wmsstatus.panda.proxy": "atlas"}),
                                 auth=auth)
    with pytest.raises(PandaError, match="credential atlas not checked yet"):
        plugin.poll(QUEUES)
    context.credentials = CredentialService(context)
    context.credentials.check_all()
    with pytest.raises(PandaError, match=f"credential atlas not usable: {proxy} does not exist"):
        plugin.poll(QUEUES)
    assert panda.count() == 0  # nothing sent without a usable credential
    proxy.write_text("-----BEGIN CERTIFICATE-----\n")
    context.credentials.check_all()
    seen = {}
    original = plugin.session.get

    def spy(url, **kwargs):
        seen.update(kwargs)
        return original(url, **kwargs)

    plugin.session.get = spy
    assert isinstance(plugin.poll(QUEUES)["TEST_SITE_A"], WMSQueueInfo)
    assert seen["cert"] == str(proxy)
    context.close()


def test_proxy_profile_must_exist(confdir, panda):
    with pytest.raises(ConfigError, match="wmsstatus.panda.proxy: no profile"):
        plugin_for(confdir, panda_queue("q", panda.url, **{"wmsstatus.panda.proxy": "nosuch"}))


def test_url_defaults_to_the_cern_panda_server(confdir):
    """APF 2.4 sites never set a PanDA URL: the server APF 2.4 used is the default."""
    confdir.write("[q]\nwmsstatusplugin = Panda\nbatchstatusplugin = Local\nbatchsubmitplugin = Local\n")
    queue = confdir.load().queues["q"]
    assert queue.plugin_options(Panda)["url"] == "https://pandaserver.cern.ch:25443/api/v1"


def test_one_request_per_poll_for_2000_queues(confdir, panda):
    data = {f"SITE_{i:04d}": {"activated": i % 7, "running": i, "defined": 1} for i in range(2000)}
    panda.stats = {"success": True, "message": "", "data": data}
    plugin, context = plugin_for(confdir, panda_queue("q", panda.url))
    poller = StatusPoller("wmsstatus", plugin, "Panda", sleep=60, maxage=60)
    for site in data:
        poller.add_queue(site)
    poller.poll_once()
    assert panda.count() == 1
    assert poller.get("SITE_0013")[0] == WMSQueueInfo(notready=1, ready=6, running=13)
    context.close()
