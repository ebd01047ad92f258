"""Per-queue configuration errors: a bad queue is not started and is critical; every other queue runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import local_queue, wait_for
from tests.test_alarms import smtp  # noqa: F401  (the SMTP receiver fixture)
from tests.test_apf24 import APF24
from tests.web_support import free_port

APF = str(Path(sys.executable).with_name("apf"))
DAEMON = [sys.executable, "-m", "autopyfactory.cli.daemon"]
REPO = Path(__file__).resolve().parent.parent
RUNNING = ("BNL_PROD-gridgk01", "ANALY_BNL_SHORT-gridgk02", "ANALY_LRZ", "BNL_LOCAL-condor")
STALE = "BNL_TEST-gridgk03"


def apf24_with_condorgt2(root: Path, panda_url: str, port: int, smtp_address: str) -> Path:
    """APF 2.4's files with ``batchsubmitplugin = CondorGT2`` in [DEFAULT], inherited by one
    enabled queue only (the others name their plugin); a test PanDA, a free web port, short cycles."""
    conf = root / "apf24"
    shutil.copytree(APF24, conf)
    queues = (conf / "queues.conf").read_text()
    queues = queues.replace("batchsubmitplugin = CondorOSGCE", "batchsubmitplugin = CondorGT2")
    for name in ("BNL_PROD-gridgk01", "ANALY_BNL_SHORT-gridgk02"):
        queues = queues.replace(f"[{name}]\n", f"[{name}]\nbatchsubmitplugin = CondorOSGCE\n")
    queues = queues.replace(f"[{STALE}]\nenabled = False\n", f"[{STALE}]\nenabled = True\n").replace(
        "batchqueue = BNL_TEST-condor\nbatchsubmitplugin = CondorGT2\n", "batchqueue = BNL_TEST-condor\n")
    (conf / "queues.conf").write_text(queues)
    (conf / "monitor.conf").write_text((conf / "monitor.conf").read_text().replace(
        "http://apfmon.lancs.ac.uk/api", "http://127.0.0.1:9/api"))
    (conf / "queues-test.conf").write_text("".join(
        f"[{name}]\nwmsstatus.panda.url = {panda_url}\napfqueue.sleep = 0.3\n\n" for name in (*RUNNING, STALE)))
    factory_conf = conf / "factory.conf"
    factory_conf.write_text(factory_conf.read_text()
                            .replace("file://queues-site.conf", "file://queues-site.conf, queues-test.conf")
                            .replace("wmsstatus.panda.sleep = 150", "wmsstatus.panda.sleep = 0.2")
                            .replace("batchstatus.condor.sleep = 150", "batchstatus.condor.sleep = 0.2")
                            .replace("factorySMTPServer = mail.matrix.net", f"factorySMTPServer = {smtp_address}")
                            + f"logserver.port = {port}\n")
    return factory_conf


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read().decode()


def test_apf24_files_with_condorgt2_start_every_other_queue_and_report_that_one(tmp_path, panda, condor_pool,
                                                                                 smtp):  # noqa: F811
    from autopyfactory.config import load
    from autopyfactory.factory import Factory
    from tests.condordouble import ScheddDouble

    port = free_port()
    factory_conf = apf24_with_condorgt2(tmp_path, panda.url, port, smtp.address)
    queues_conf = factory_conf.with_name("queues.conf")
    default_line = next(number for number, line in enumerate(queues_conf.read_text().splitlines(), 1)
                        if line.startswith("batchsubmitplugin = CondorGT2"))

    # check-config: exit 2, the error on the queue that inherits the value, with the line that sets it
    done = subprocess.run([APF, "check-config", "--conf", str(factory_conf)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith(f"{queues_conf}") and f"[{STALE}] batchsubmitplugin:" in line, line
    assert "CondorGT2 no longer exists" in line and f"set at {queues_conf} line {default_line}" in line, line
    assert "[DEFAULT]" in line and "[DEFAULT] batchsubmitplugin" not in line

    for site in ("BNL_PROD", "ANALY_BNL_SHORT", "ANALY_LRZ", "BNL_LOCAL", "BNL_TEST"):
        panda.set_site(site, activated=3)
    schedd = ScheddDouble()
    condor_pool.local_collector = "cm.example.org:9618"
    condor_pool.add_schedd(schedd, "<192.0.2.10:9618>", collector=condor_pool.local_collector)
    config = load(str(factory_conf), partial=True)
    assert set(config.invalid) == {STALE} and STALE not in config.enabled_queues
    factory = Factory(config)
    records: dict[str, list] = {}
    factory.listeners.append(lambda queue, record: records.setdefault(queue.name, []).append(record))
    factory.start()
    try:
        assert set(factory.queues) == set(RUNNING)
        wait_for(lambda: all(any(r.submitted for r in records.get(q, [])) for q in ("ANALY_LRZ", "BNL_LOCAL-condor")),
                 what="submissions of the ARC and local queues")
        wait_for(lambda: all(records.get(q) for q in RUNNING), what="a cycle of every other queue")
        base = f"http://127.0.0.1:{port}"
        stale = json.loads(get(f"{base}/api/v1/queues/{STALE}"))
        assert stale["health"] == "critical"
        assert "CondorGT2 no longer exists" in stale["health_reason"]
        listed = {q["name"]: q["health"] for q in json.loads(get(f"{base}/api/v1/queues"))["queues"]}
        assert listed[STALE] == "critical" and set(RUNNING) <= set(listed)
        page = get(f"{base}/")
        assert f'data-queue="{STALE}" data-health="critical"' in page
        metrics = get(f"{base}/metrics")
        assert f'apf_queue_health{{level="critical",queue="{STALE}"}} 1.0' in metrics, [m for m in metrics.splitlines() if STALE in m]
        status = subprocess.run([APF, "status", "--url", base], capture_output=True, text=True, timeout=60)
        assert status.returncode == 2, status.stdout + status.stderr
        assert STALE in status.stdout and "CondorGT2" in status.stdout, status.stdout
        wait_for(lambda: smtp.about(STALE, "configuration"), what="the alarm mail about the stale queue")
        [mail] = smtp.about(STALE, "configuration")
        assert "critical" in mail["Subject"] and "CondorGT2" in mail.get_payload(decode=True).decode()
    finally:
        factory.stop(timeout=10)
    assert STALE not in records


# ---------------------------------------------------------------- the real daemon, and a reload


def test_daemon_starts_the_good_queues_and_a_reload_follows_the_same_rule(confdir, tmp_path):
    port = free_port()
    token = tmp_path / "admin.token"
    token.write_text("t" * 40 + "\n")
    token.chmod(0o600)
    factory_extra = f"logserver.enabled = True\nlogserver.port = {port}\nadmin.tokenfile = {token}\n"
    bad = {"sched.maxpercycle.maximum": "lots", "schedplugin": "Ready, MaxPerCycle"}
    confdir.write(local_queue("GOOD", confdir.spool) + local_queue("BAD", confdir.spool, **bad),
                  factory=factory_extra)
    pidfile, log = tmp_path / "apf.pid", tmp_path / "apf.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = subprocess.run([*DAEMON, "--conf", str(confdir.root / "factory.conf"), "--pidfile", str(pidfile),
                              "--log", str(log), "--loglevel", "debug"],  # every cycle's line (repeats are DEBUG)
                             capture_output=True, text=True, timeout=120, env=env)
    assert started.returncode == 0, started.stderr
    pid = int(pidfile.read_text())
    base = f"http://127.0.0.1:{port}"
    conf = ["--conf", str(confdir.root / "factory.conf")]
    try:
        assert "queue BAD will not start" in started.stderr and "[BAD] sched.maxpercycle.maximum" in started.stderr
        wait_for(lambda: "queue GOOD cycle 2" in log.read_text(), what="cycles of GOOD")
        assert "queue BAD cycle" not in log.read_text()
        status = subprocess.run([APF, "status", "--url", base], capture_output=True, text=True, timeout=60)
        assert status.returncode == 2 and "not started: sched.maxpercycle.maximum" in status.stdout, status.stdout

        # reload: BAD fixed, GOOD broken (it keeps running as it was, critical), NEW added, WORSE bad from the start
        confdir.write(local_queue("GOOD", confdir.spool, **{"apfqueue.sleep": "soon"})
                      + local_queue("BAD", confdir.spool) + local_queue("NEW", confdir.spool)
                      + local_queue("WORSE", confdir.spool, wmsstatusplugin="Nowhere"), factory=factory_extra)
        answer = subprocess.run([APF, "reload", *conf], capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0, answer.stdout + answer.stderr
        assert "invalid queue: " in answer.stdout and "[GOOD] apfqueue.sleep" in answer.stdout
        assert "[WORSE] wmsstatusplugin: unknown WMS status plugin" in answer.stdout
        wait_for(lambda: "queue BAD cycle 1" in log.read_text() and "queue NEW cycle 1" in log.read_text(),
                 what="the fixed and the added queue to run")
        size = len(log.read_text())
        wait_for(lambda: "queue GOOD cycle" in log.read_text()[size:], what="GOOD to go on with its old config")
        queues = {q["name"]: q for q in json.loads(get(f"{base}/api/v1/queues"))["queues"]}
        assert queues["GOOD"]["health"] == "critical" and "previous configuration" in queues["GOOD"]["health_reason"]
        assert queues["WORSE"]["health"] == "critical" and "not started" in queues["WORSE"]["health_reason"]
        assert queues["BAD"]["health"] != "critical" and queues["NEW"]["health"] != "critical"
        assert "queue WORSE cycle" not in log.read_text()
        checked = subprocess.run([APF, "check-config", *conf], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 2
        assert {line.split("]")[0].split("[")[-1] for line in checked.stdout.splitlines()} == {"GOOD", "WORSE"}
    finally:
        subprocess.run(["kill", str(pid)], check=False)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or "stopped" in log.read_text(), what="the daemon to stop")
