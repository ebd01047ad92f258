"""End to end on real parts: PanDA jobs -> factory -> Slurm pilots -> the real PanDA pilot -> jobs finished.

Jobs are submitted to the real PanDA server (tests/pandainstance.py) for a
queue of their own. A factory with the Panda WMS plugin and the real Slurm
batch plugins (the shared test cluster, tests/slurmcluster.py) sees them
activated and submits pilots; each pilot runs the shipped wrapper with the
factory's X.509 credential (X509_USER_PROXY from the queue's profile), whose
PanDA stage fetches the real PanDA pilot from a URL and runs it as the
non-root pilot user (sbatch --uid; PILOT_NOKILL=1 as well). The pilots get
the jobs, run their payloads and report them; the jobs end ``finished`` in
PanDA (after one pass of the server's adder), the pilots ``done`` in the
factory, and a pilot that finds no job left ends ``empty``.

How the count of pilots is fixed: three jobs are activated when the factory
starts, and one of them is then taken by another client (as another
factory's pilot would), so the factory sees three and submits three pilots
(``Ready``), ``MaxToRun`` keeping it at three while they live; two get the
two jobs left, the third finds none. Run alone with ``make e2e``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from autopyfactory.factory import Factory
from autopyfactory.info import EMPTY_EXIT
from tests.conftest import ConfDir, wait_for
from tests.pandainstance import PILOT_USER, PilotSite, pilot_missing

FILE_PROXY = '''
import os
from autopyfactory.config import Key
from autopyfactory.info import CredentialStatus
from autopyfactory.interfaces import AuthPlugin

class FileProxy(AuthPlugin):
    """An X.509 proxy file that is usable while it exists (no voms-proxy-info on the test machines)."""
    name = "FileProxy"
    credential_type = "x509"
    keys = {"path": Key("path", "")}

    def check(self):
        path = self.options["path"]
        if not os.path.exists(path):
            return CredentialStatus(self.section.name, False, None, f"{path} does not exist", path)
        return CredentialStatus(self.section.name, True, 86400, "", path)
'''


@pytest.fixture
def site(panda_server, monkeypatch):
    why = pilot_missing()
    if why:
        pytest.skip(why)
    site = PilotSite(panda_server, f"APF_E2E_{uuid.uuid4().hex[:6].upper()}")
    panda_server.add_site(site.queue)
    # what the worker nodes give the pilots: sbatch --export=ALL hands them the factory's environment
    for key, value in site.environment().items():
        if key != "X509_USER_PROXY":  # that one comes from the queue's credential profile
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("APF_WRAPPER_PYTHON", "/usr/bin/python3")
    yield site
    site.close()


def our_slurm_jobs(name: str) -> list[str]:
    """``jobid state exitcode`` of this test's pilots (by job name: the cluster is shared)."""
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-n", name, "-O", "JobID:|,State:|,exit_code:|"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_panda_jobs_run_by_pilots_this_factory_submitted_to_slurm(slurm, panda_server, site):
    ids = panda_server.submit(site.queue, 3)
    wait_for(lambda: set(panda_server.job_states(ids).values()) == {"activated"}, "jobs activated", timeout=60)
    panda_server.refresh_stats()

    root = Path(tempfile.mkdtemp(prefix="apf-e2e-", dir="/tmp"))  # the pilot user writes its logs there
    root.chmod(0o755)
    confdir = ConfDir(root)
    confdir.dropin("fileproxy.py", FILE_PROXY)
    arguments = " ".join([f"--wrappervo=ATLAS --wrapperwmsqueue=%(wmsqueue)s --wrapperpiloturl={site.pilot_url}",
                          f"--wrapperpilotversion={site.version}", *site.pilot_arguments()])
    qname = f"E2E_{uuid.uuid4().hex[:6]}"  # the cluster is shared: our pilots go by this name
    confdir.write(textwrap.dedent(f"""\
        [{qname}]
        wmsqueue = {site.queue}
        wmsstatusplugin = Panda
        wmsstatus.panda.url = {panda_server.api}
        wmsstatus.panda.proxy = pilot
        batchstatusplugin = Slurm
        batchsubmitplugin = Slurm
        batchsubmit.slurm.proxy = pilot
        batchsubmit.slurm.partition = {slurm.partition}
        batchsubmit.slurm.extraargs = --uid={PILOT_USER} --gid={PILOT_USER} --time=15
        schedplugin = Ready, MaxToRun
        sched.maxtorun.maximum = 3
        apfqueue.sleep = 2
        executable.arguments = {arguments}
        """), factory=textwrap.dedent("""\
        wmsstatus.panda.sleep = 2
        batchstatus.slurm.sleep = 2
        """), auth=f"[pilot]\nplugin = FileProxy\nfileproxy.path = {site.proxy}\n")
    config = confdir.load()
    factory = Factory(config)
    logdir = Path(factory.context.logdir(qname))
    shutil.chown(logdir, PILOT_USER, PILOT_USER)  # Slurm writes the pilots' .out/.err as the pilot user
    name = f"apf.test-factory.{qname}"
    factory.start()
    stop = threading.Event()
    try:
        queue = factory.queues[qname]
        wait_for(lambda: queue.submitted_total >= 3, "the factory to submit 3 pilots", timeout=120, every=0.5)
        # another client takes one job: three were activated, two are left for our three pilots
        taken = panda_server.post("/api/v1/pilot/acquire_jobs",
                                  {"site_name": site.queue, "prod_source_label": "managed", "node": "other"})
        assert len(taken["data"]["jobs"]) == 1, taken

        def refresh():  # what pg_cron does every minute, every second
            while not stop.wait(1):
                panda_server.refresh_stats()

        threading.Thread(target=refresh, daemon=True).start()

        def ended():
            counts = queue.finished_counts(0) or {}
            return counts if counts.get("done", 0) + counts.get("empty", 0) + counts.get("fault", 0) >= 3 else None

        counts = wait_for(ended, "the three pilots to end", timeout=600, every=2)
        assert counts == {"done": 2, "fault": 0, "empty": 1}, counts
        # no more than the chain decided: Slurm has exactly the pilots the factory submitted
        pilots = our_slurm_jobs(name)
        assert len(pilots) == queue.submitted_total == 3, pilots
        assert sorted(p.split("|")[1] for p in pilots) == ["COMPLETED", "COMPLETED", "FAILED"]
        assert any(p.split("|")[2] in (str(EMPTY_EXIT << 8), f"{EMPTY_EXIT}:0") for p in pilots), pilots
    finally:
        stop.set()
        factory.stop(timeout=30)
        subprocess.run(["scancel", "-n", name], capture_output=True, timeout=60)

    # the pilots' own logs: which job each ran, and the one that found none
    outs = {p.name: p.read_text(errors="replace") for p in logdir.glob("*.out")}
    ends = sorted(text.strip().splitlines()[-1] for text in outs.values())
    assert ends == [f"APF-WRAPPER-END status=empty exit={EMPTY_EXIT}"] + ["APF-WRAPPER-END status=ok exit=0"] * 2, ends
    left = [i for i in ids if i != taken["data"]["jobs"][0]["PandaID"]]
    ran = sorted(int(line.split("jobs=")[1].split()[0]) for text in outs.values() for line in text.splitlines()
                 if line.startswith("APF-PANDA exit=0 jobs=") and "jobs=none" not in line)
    assert ran == sorted(left)  # each job by exactly one pilot
    assert all("X509_USER_PROXY" not in text or site.proxy in text for text in outs.values())
    # PanDA's side: the two jobs the pilots ran end finished once the adder has run
    panda_server.run_adder()
    states = panda_server.job_states(ids)
    assert {i: states[i] for i in left} == dict.fromkeys(left, "finished"), states
    shutil.rmtree(root, ignore_errors=True)
