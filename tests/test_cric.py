"""Queues from CRIC: the sections built from CRIC's pandaqueue JSON, the one-shot command, and a real
daemon following CRIC through reloads (a PanDA queue added gets pilots, one removed is drained)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autopyfactory.config import cric
from tests.conftest import wait_for
from tests.web_support import free_port

DATA = Path(__file__).resolve().parent / "data" / "cric" / "pandaqueues.json"
APF = str(Path(sys.executable).with_name("apf"))
REPO = Path(__file__).resolve().parent.parent
CE = "batchsubmit.condorce."
ARC = "batchsubmit.condorarc."
EXPECTED = {"BNL_PROD_UCORE-gridgk01.racf.bnl.gov", "BNL_PROD_UCORE-gridgk02.racf.bnl.gov",
            "NDGF-T1_MCORE-arc01.ndgf.org"}


def listing() -> dict:
    return json.loads(DATA.read_text())


def test_three_panda_queues_build_exactly_the_expected_sections():
    built = cric.build(cric.parse(DATA.read_text()), cric.Selection(jobsperpilot=1.5, numfactories=2))
    assert set(built.sections) == EXPECTED  # not the Harvester queue, not the inactive CE
    gk01, gk02 = built.sections["BNL_PROD_UCORE-gridgk01.racf.bnl.gov"], built.sections[
        "BNL_PROD_UCORE-gridgk02.racf.bnl.gov"]
    arc = built.sections["NDGF-T1_MCORE-arc01.ndgf.org"]
    # 1 / numfactories / CEs of the PanDA queue / jobsperpilot
    assert float(gk01["sched.scale.factor"]) == pytest.approx(1 / 2 / 2 / 1.5)
    assert float(arc["sched.scale.factor"]) == pytest.approx(1 / 2 / 1 / 1.5)
    assert gk01["batchsubmitplugin"] == "CondorCE" and arc["batchsubmitplugin"] == "CondorARC"
    assert (gk01["wmsqueue"], gk01["batchqueue"]) == ("BNL_PROD_UCORE", "BNL_PROD_UCORE")
    assert gk01[CE + "gridresource"] == "gridgk01.racf.bnl.gov:9619"
    assert gk01[CE + "condor_attributes.+maxMemory"] == "16000"  # maxrss before maxmemory
    assert gk01[CE + "condor_attributes.+xcount"] == "8"
    assert gk01[CE + "condor_attributes.+voactivity"] == '"production"'
    assert gk01[CE + "condor_attributes.+maxWallTime"] == "2880"
    assert CE + "condor_attributes.+remote_queue" not in gk01  # "default"
    assert gk02[CE + "condor_attributes.+remote_queue"] == '"mcore"'
    assert arc[ARC + "gridresource"] == "arc01.ndgf.org"
    # ARC: count 4, memory per core 8000 MB / 4 (no maxrss), walltime 86400 s, cputime x 4, as ADL
    assert arc[ARC + "condor_attributes.arc_resources"] == (
        "<QueueName>atlas-mcore</QueueName><SlotRequirement><NumberOfSlots>4</NumberOfSlots>"
        "<SlotsPerHost>4</SlotsPerHost></SlotRequirement>"
        f"<IndividualPhysicalMemory>{2000 * 1024 * 1024}</IndividualPhysicalMemory>"
        "<WallTime>86400</WallTime><TotalCPUTime>345600</TotalCPUTime>")


@pytest.mark.parametrize("selection, names", [
    (cric.Selection(clouds=["us"]), {"BNL_PROD_UCORE-gridgk01.racf.bnl.gov", "BNL_PROD_UCORE-gridgk02.racf.bnl.gov"}),
    (cric.Selection(activities=["unified"]), {"NDGF-T1_MCORE-arc01.ndgf.org"}),
    (cric.Selection(sites=["NDGF-T1"]), {"NDGF-T1_MCORE-arc01.ndgf.org"}),
    (cric.Selection(vos=["cms"]), set()),
    (cric.Selection(pilot_managers=["harvester"]), {"CERN-PROD_UCORE-ce503.cern.ch"}),
])
def test_filters(selection, names):
    assert set(cric.build(cric.parse(DATA.read_text()), selection).sections) == names


def test_a_bad_entry_never_breaks_the_others():
    queues = listing()
    queues["BROKEN_CORES"] = {**copy.deepcopy(queues["NDGF-T1_MCORE"]), "panda_resource": "BROKEN_CORES",
                              "corecount": "lots"}
    queues["NOT_AN_OBJECT"] = ["x"]
    queues["BNL_PROD_UCORE"]["queues"].append({"ce_flavour": "HTCONDOR-CE", "ce_state": "ACTIVE",
                                                "ce_status": "production"})  # no ce_endpoint
    queues["BNL_PROD_UCORE"]["queues"].append({"ce_endpoint": "cream.example.org:8443", "ce_flavour": "CREAM-CE",
                                                "ce_state": "ACTIVE", "ce_status": "production"})
    built = cric.build(queues, cric.Selection())
    assert set(built.sections) == EXPECTED
    said = "\n".join(built.notes)
    assert "PanDA queue BROKEN_CORES: skipped, ValueError" in said
    assert "PanDA queue NOT_AN_OBJECT: skipped" in said
    assert "a CE skipped, KeyError" in said and "ce_flavour cream-ce has no submit plugin" in said
    # the scale factor counts the CEs actually used
    assert float(built.sections["BNL_PROD_UCORE-gridgk01.racf.bnl.gov"]["sched.scale.factor"]) == 0.5


@pytest.mark.parametrize("text, why", [("{", "not JSON"), ("[]", "not a CRIC pandaqueue listing"),
                                       ('"x"', "not a CRIC pandaqueue listing")])
def test_a_document_that_is_no_listing_is_refused(text, why):
    with pytest.raises(ValueError, match=why):
        cric.parse(text)


def test_queues_from_cric_writes_a_queues_conf_that_loads(confdir, tmp_path):
    defaults = tmp_path / "cric-defaults.conf"
    defaults.write_text("[DEFAULT]\nwmsstatusplugin = Panda\nbatchstatusplugin = Condor\n"
                        "schedplugin = Ready, Scale, MaxPerCycle\nsched.maxpercycle.maximum = 20\n")
    out = confdir.root / "queues.conf"
    done = subprocess.run([APF, "queues-from-cric", "--cric", str(DATA), "--defaults", str(defaults),
                           "--factories", "2", "--jobs-per-pilot", "1.5", "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "3 queue section(s) written" in done.stderr
    (confdir.root / "factory.conf").write_text(
        f"[Factory]\nfactoryId = t\nqueueConf = queues.conf\nbaseLogDir = {confdir.logs}\n")
    checked = subprocess.run([APF, "check-config", "--conf", str(confdir.root / "factory.conf"), "--json"],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    queues = json.loads(checked.stdout)["queues"]
    assert set(queues) == EXPECTED
    gk02 = queues["BNL_PROD_UCORE-gridgk02.racf.bnl.gov"]["values"]
    assert gk02["schedplugin"] == ["Ready", "Scale", "MaxPerCycle"]
    assert gk02["sched.scale.factor"] == pytest.approx(1 / 6)
    assert gk02["batchsubmit.condorce.condor_attributes.+remote_queue"] == '"mcore"'


# ---------------------------------------------------------------- a real daemon following CRIC


class Cric:
    """CRIC's pandaqueue listing on 127.0.0.1; ``document`` is what it answers (None: HTTP 500)."""

    def __init__(self, document: dict):
        self.document: dict | None = document
        cric_ = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if cric_.document is None:
                    self.send_error(500, "CRIC is down")
                    return
                body = json.dumps(cric_.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/atlas/pandaqueue/query/?json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def api_queues(port: int) -> dict[str, dict]:
    import requests

    answer = requests.get(f"http://127.0.0.1:{port}/api/v1/queues", timeout=10)
    return {q["name"]: q for q in answer.json()["queues"]}


def test_daemon_follows_cric_added_queue_gets_pilots_removed_one_is_drained(tmp_path, panda):
    document = listing()
    server = Cric(document)
    port = free_port()
    (tmp_path / "cric-defaults.conf").write_text(
        "[DEFAULT]\nwmsstatusplugin = Panda\nbatchstatusplugin = Condor\n"
        f"wmsstatus.panda.url = {panda.url}\napfqueue.sleep = 0.3\nschedplugin = Ready, Scale\n")
    (tmp_path / "factory.conf").write_text(
        f"[Factory]\nfactoryId = cric-test\nbaseLogDir = {tmp_path / 'logs'}\nlogserver.enabled = True\n"
        f"logserver.port = {port}\nwmsstatus.panda.sleep = 0.2\nbatchstatus.condor.sleep = 0.2\n"
        f"config.queues.plugin = CRIC\nconfig.queues.cric.url = {server.url}\n"
        f"config.queues.cric.defaults = cric-defaults.conf\nconfig.remote.cachedir = {tmp_path / 'cache'}\n")
    (tmp_path / "cache").mkdir()
    for site in ("BNL_PROD_UCORE", "NDGF-T1_MCORE", "AGLT2_UCORE"):
        panda.set_site(site, activated=4)
    log = tmp_path / "apf.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "tests.condor_daemon", "--conf", str(tmp_path / "factory.conf"),
                                "--foreground", "--log", str(log), "--pidfile", str(tmp_path / "apf.pid")],
                               env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def pending(names) -> bool:
            queues = api_queues(port) if log.exists() and "web: serving" in log.read_text() else {}
            return set(names) <= set(queues) and all((queues[n]["pending"] or 0) > 0 for n in names)

        wait_for(lambda: pending(EXPECTED), what="pilots for the three CE queues built from CRIC", timeout=120)
        assert set(api_queues(port)) == EXPECTED

        # CRIC changes: a PanDA queue added, one removed
        added = copy.deepcopy(document["BNL_PROD_UCORE"])
        added.update(panda_resource="AGLT2_UCORE", atlas_site="AGLT2",
                     queues=[{**added["queues"][0], "ce_endpoint": "gate01.aglt2.org:9619"}])
        server.document = {"BNL_PROD_UCORE": document["BNL_PROD_UCORE"], "AGLT2_UCORE": added,
                           "CERN-PROD_UCORE": document["CERN-PROD_UCORE"]}
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: pending(["AGLT2_UCORE-gate01.aglt2.org"]), what="pilots for the queue added in CRIC",
                 timeout=120)
        wait_for(lambda: "NDGF-T1_MCORE-arc01.ndgf.org" not in api_queues(port), what="the removed queue to stop",
                 timeout=120)
        text = log.read_text()
        assert "queue NDGF-T1_MCORE-arc01.ndgf.org is gone from CRIC: draining it" in text
        assert "gone from CRIC and drained" in text
        assert "queue drained: removing 4" in text  # its pending pilots were removed first

        # CRIC down: the last good copy stands in, nothing changes
        server.document = None
        before = set(api_queues(port))
        size = len(log.read_text())
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload applied" in log.read_text()[size:], what="the reload from the cached copy")
        assert "last good copy" in log.read_text()[size:] or "cached" in log.read_text()[size:]
        assert set(api_queues(port)) == before == {"BNL_PROD_UCORE-gridgk01.racf.bnl.gov",
                                                   "BNL_PROD_UCORE-gridgk02.racf.bnl.gov",
                                                   "AGLT2_UCORE-gate01.aglt2.org"}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        server.close()
        print("daemon stderr:", err.decode(errors="replace")[-3000:])  # shown when the test fails
        print("daemon log:", log.read_text()[-5000:] if log.exists() else "(none)")
