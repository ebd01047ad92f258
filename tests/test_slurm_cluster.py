"""The factory against a real single-node Slurm cluster (tests/slurmcluster.py).

Pilots are really submitted with sbatch, run the pilot wrapper on the node,
claim work items from the Local WMS spool and end; the factory counts them
from squeue. sbatch and squeue are reached through small counting stand-ins
that log each call and exec the real command, so the tests can count calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from autopyfactory.context import FactoryContext
from autopyfactory.factory import Factory
from autopyfactory.plugins.batchstatus.slurm import SQUEUE_FORMAT, parse_squeue
from autopyfactory.plugins.batchstatus.slurm import Slurm as SlurmStatus
from autopyfactory.plugins.batchsubmit.slurm import Slurm as SlurmSubmit
from autopyfactory.plugins.batchsubmit.slurm import launcher as shipped_launcher
from tests.conftest import ConfDir, wait_for
from tests.slurmcluster import SlurmCluster

DEADLINE = 240.0


def counting_command(directory: Path, name: str) -> tuple[str, Path]:
    """A stand-in for ``name`` that logs its argv and execs the real command."""
    log = directory / f"{name}.calls"
    log.write_text("")
    script = directory / f"counting-{name}"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(repr(sys.argv[1:]) + '\\n')\n"
        f"os.execvp({name!r}, [{name!r}] + sys.argv[1:])\n"
    )
    script.chmod(0o755)
    return str(script), log


def calls(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line]


def write_factory(confdir: ConfDir, queues: str, factory: str = "") -> str:
    """factory.conf + queues.conf with a factory id of its own (pilots of other tests are not ours)."""
    fid = f"slurmtest-{uuid.uuid4().hex[:8]}"
    path = confdir.write(queues, factory)
    path.write_text(path.read_text().replace("factoryId = test-factory", f"factoryId = {fid}"))
    return fid


def slurm_queue(name: str, confdir: ConfDir, slurm: SlurmCluster, squeue: str, sbatch: str, **extra) -> str:
    keys = {
        "wmsqueue": name,
        "wmsstatusplugin": "Local",
        "wmsstatus.local.spooldir": confdir.spool,
        "batchstatusplugin": "Slurm",
        "batchstatus.slurm.squeue": squeue,
        "batchstatus.slurm.slurmconf": slurm.conf,
        "batchsubmitplugin": "Slurm",
        "batchsubmit.slurm.sbatch": sbatch,
        "batchsubmit.slurm.slurmconf": slurm.conf,
        "batchqueue": slurm.partition,
        "apfqueue.sleep": 0.5,
        "executable.arguments": f"--wrapperwmsqueue={name} --wrapperplugin=local",
    }
    keys.update({k.replace("__", "."): v for k, v in extra.items()})
    return f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"


FACTORY_TIMING = """\
batchstatus.slurm.sleep = 0.5
batchstatus.slurm.maxage = 30
"""


def start(confdir: ConfDir) -> Factory:
    config = confdir.load()
    factory = Factory(config)
    factory.start()
    return factory


def cancel_factory_pilots(slurm: SlurmCluster, factory: str) -> None:
    out = subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING", "-o", "%F|%k"], capture_output=True, text=True,
                         env={**os.environ, **slurm.env}, timeout=60).stdout
    jobs = {row.split("|", 1)[0] for row in out.splitlines() if f"apf:{factory}:" in row}
    if jobs:
        subprocess.run(["scancel", *sorted(jobs)], env={**os.environ, **slurm.env}, timeout=60,
                       capture_output=True)


# ---------------------------------------------------------------- the whole loop


def test_pilots_run_through_slurm_and_are_counted(slurm, confdir: ConfDir, tmp_path: Path):
    squeue, squeue_log = counting_command(tmp_path, "squeue")
    sbatch, sbatch_log = counting_command(tmp_path, "sbatch")
    queues = (slurm_queue("GOOD", confdir, slurm, squeue, sbatch) +
              slurm_queue("BAD", confdir, slurm, squeue, sbatch))
    fid = write_factory(confdir, queues, FACTORY_TIMING)
    confdir.work("GOOD", 3, ["sleep", "4"])
    confdir.work("BAD", 1, ["sh", "-c", "sleep 2; exit 3"])
    factory = start(confdir)
    seen_active = {"GOOD": 0, "BAD": 0}
    try:
        def finished() -> bool:
            for name in seen_active:
                info, _, _ = factory.queues[name].batch_status()
                if info is not None:
                    seen_active[name] = max(seen_active[name], info.pending + info.running)
            good, _, _ = factory.queues["GOOD"].batch_status()
            bad, _, _ = factory.queues["BAD"].batch_status()
            return (good is not None and bad is not None and good.done >= 3 and bad.fault >= 1
                    and good.pending + good.running == 0 and bad.pending + bad.running == 0)

        wait_for(finished, "3 pilots done on GOOD and 1 fault on BAD", timeout=DEADLINE)
        submitted_total = sum(factory.queues[q].submitted_total for q in ("GOOD", "BAD"))
        status_pollers = [p for (kind, _), p in factory.status.pollers.items() if kind == "batchstatus"]
        bad_info, _, _ = factory.queues["BAD"].batch_status()
    finally:
        factory.stop()
        cancel_factory_pilots(slurm, fid)

    # pilots were seen pending or running in the batch system
    assert seen_active["GOOD"] >= 1 and seen_active["BAD"] >= 1
    # every sbatch call left its description (<arrayjob>.sbatch) beside the logs
    descriptions = {p.stem: p.read_text() for p in confdir.logs.glob("*/*/[0-9]*.sbatch")}
    sbatch_calls = calls(sbatch_log)
    assert len(sbatch_calls) == len(descriptions) >= 2
    # the batch script of every call is the launcher shipped with the package: no queue writes one of its own,
    # and each description holds the script's text
    script, text = shipped_launcher()
    assert all(f"{script!r}, '--wrapperwmsqueue=" in call for call in sbatch_calls), sbatch_calls
    assert not list(confdir.logs.rglob("apf-slurm-launcher.sh"))
    assert all(text in description for description in descriptions.values())
    # one sbatch call per submitting cycle, never one per pilot: the arrays add up to what was submitted
    sizes = [int(call.split("--array=0-")[1].split("'")[0]) + 1 for call in sbatch_calls]
    assert sum(sizes) == submitted_total
    # the work really ran on the node: every item claimed, run and recorded by one of those pilots
    done = [json.loads(p.read_text()) for p in (confdir.spool / "GOOD" / "done").glob("*.json")]
    assert len(done) == 3 and all(d["exitcode"] == 0 for d in done)
    assert {d["pilot"].split(".")[0] for d in done} <= set(descriptions)
    failed = [json.loads(p.read_text()) for p in (confdir.spool / "BAD" / "done").glob("*.json")]
    assert [d["exitcode"] for d in failed] == [3]
    # the pilot that exited non-zero is a fault, with its exit code
    assert any(p.state == "fault" and p.exitcode == 3 for p in bad_info.finished)
    # pilot logs, each ended by the wrapper's marker
    outs = list(confdir.logs.glob("*/GOOD/*.out"))
    assert outs and all("APF-WRAPPER-END" in p.read_text() for p in outs)
    assert any("status=ok" in p.read_text() for p in outs)
    # one squeue call per status interval for both queues: one poller, one call per poll
    assert len(status_pollers) == 1
    assert status_pollers[0].queues == frozenset({"GOOD", "BAD"})
    assert len(calls(squeue_log)) == status_pollers[0].calls


# ---------------------------------------------------------------- bulk submit and removal


def test_200_pilots_are_one_sbatch_call_and_removal_spares_running(slurm, confdir: ConfDir, tmp_path: Path):
    squeue, _ = counting_command(tmp_path, "squeue")
    sbatch, sbatch_log = counting_command(tmp_path, "sbatch")
    queue_text = slurm_queue("BULK", confdir, slurm, squeue, sbatch, executable="/bin/sleep",
                             **{"executable__arguments": "600"})
    fid = write_factory(confdir, queue_text)
    config = confdir.load()
    context = FactoryContext(config)
    qconfig = config.queues["BULK"]
    submitter = SlurmSubmit(qconfig, context)
    status = SlurmStatus(qconfig.plugin_options(SlurmStatus), context)
    try:
        result = submitter.submit(200)
        assert result.error is None, result.error
        assert result.count == 200 and len(set(result.ids)) == 200
        assert len(calls(sbatch_log)) == 1
        assert len({i.split("_")[0] for i in result.ids}) == 1  # one job array

        info = wait_for(lambda: (i := status.poll(["BULK"])["BULK"]).running > 0 and i, "some pilots running",
                        timeout=DEADLINE, every=0.5)
        assert info.pending + info.running + info.done + info.fault == 200
        # the queue wait of every pilot that started, from Slurm's own submit and start times
        assert len(info.queue_waits) >= info.running and all(0 <= w < 600 for w in info.queue_waits)
        assert len(info.queue_wait_starts) == len(info.queue_waits)
        assert all(time.time() - 3600 <= t <= time.time() for t in info.queue_wait_starts)

        before = running_ids(slurm, fid)
        removed = submitter.remove(1000)
        assert removed.error is None, removed.error
        after = running_ids(slurm, fid)
        after_info = status.poll(["BULK"])["BULK"]
        # no pending pilot left, every pilot that was running still is
        assert after_info.pending == 0
        assert before <= after
        assert removed.count + len(after) == 200
        assert not set(removed.ids) & after
        # the removed ones show as removed, not as faults
        assert after_info.fault == 0
    finally:
        cancel_factory_pilots(slurm, fid)


def running_ids(slurm: SlurmCluster, factory: str) -> set[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-t", "RUNNING", "-O", SQUEUE_FORMAT],
                         capture_output=True, text=True, env={**os.environ, **slurm.env}, timeout=60).stdout
    return {i for line in parse_squeue(out) if line.factory == factory for i in line.ids}


# ---------------------------------------------------------------- controller outage


def test_controller_outage_makes_status_unknown_and_queue_resumes(slurm, confdir: ConfDir, tmp_path: Path):
    squeue, _ = counting_command(tmp_path, "squeue")
    sbatch, _ = counting_command(tmp_path, "sbatch")
    queue_text = slurm_queue("OUTAGE", confdir, slurm, squeue, sbatch, executable="/bin/true",
                             schedplugin="Fixed", sched__fixed__pilotspercycle="1",
                             batchstatus__slurm__timeout="10", batchsubmit__slurm__timeout="10")
    fid = write_factory(confdir, queue_text, "batchstatus.slurm.sleep = 0.5\nbatchstatus.slurm.maxage = 4\n")
    factory = start(confdir)
    queue = factory.queues["OUTAGE"]
    try:
        wait_for(lambda: queue.submitted_total >= 1, "a first submission", timeout=DEADLINE)
        slurm.stop_controller()
        try:
            wait_for(lambda: any("batch status unknown" in h for r in list(queue.records)[:3] for h in r.holds),
                     "the queue to see batch status unknown", timeout=DEADLINE)
            total = queue.submitted_total
            cycles = queue.cycles
            wait_for(lambda: queue.cycles >= cycles + 4, "more cycles during the outage", timeout=DEADLINE)
            assert queue.submitted_total == total
            assert queue.alive
            info, _, why = queue.batch_status()
            assert info is None and why
        finally:
            slurm.start_controller()
            slurm.wait_up()
        total = queue.submitted_total
        wait_for(lambda: queue.submitted_total > total, "submissions to resume after slurmctld restarts", timeout=DEADLINE)
        assert queue.alive
    finally:
        factory.stop()
        cancel_factory_pilots(slurm, fid)


def test_a_nested_user_leaving_keeps_the_cluster_up(slurm):
    # a bench script's slurm_cluster() inside the pytest session used to stop the
    # session's cluster on exit (users were counted per process, not per acquisition)
    from tests.slurmcluster import slurm_cluster

    with slurm_cluster():
        pass
    assert slurm.ping()


# ---------------------------------------------------------------- credentials


def test_token_profile_reaches_the_pilot_as_a_bearer_token(slurm, confdir: ConfDir, tmp_path: Path, monkeypatch):
    """A pilot of a Token queue sees BEARER_TOKEN_FILE, and no X.509 proxy even when the factory has one."""
    from autopyfactory.credentials import CredentialService
    from tests.test_credentials import jwt

    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "factory-proxy"))  # the factory's own, not the queue's
    token = tmp_path / "pilot.token"
    token.write_text(jwt(time.time() + 86400))
    seen = tmp_path / "pilot-env"
    pilot = tmp_path / "pilot.sh"
    pilot.write_text(f"#!/bin/sh\nenv > {seen}.tmp && mv {seen}.tmp {seen}\n")
    pilot.chmod(0o755)
    queue = slurm_queue("TOK", confdir, slurm, "squeue", "sbatch", executable=pilot, batchsubmit__slurm__proxy="tok")
    fid = write_factory(confdir, queue)
    (confdir.root / "auth.conf").write_text(f"[tok]\nplugin = Token\ntoken.tokenfile = {token}\ntoken.minlife = 0\n")
    config = confdir.load()
    context = FactoryContext(config)
    context.credentials = CredentialService(context)
    context.credentials.check_all()
    try:
        result = SlurmSubmit(config.queues["TOK"], context).submit(1)
        assert result.error is None and result.count == 1
        wait_for(seen.exists, "the pilot's environment", timeout=DEADLINE)
    finally:
        cancel_factory_pilots(slurm, fid)
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert env["BEARER_TOKEN_FILE"] == str(token)
    assert "X509_USER_PROXY" not in env
