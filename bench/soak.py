"""Soak: one real factory daemon with 1,000 queues for SOAK_MINUTES (default 60), watched from outside.

``make soak`` (not part of ``make test``). The factory runs as an operator runs it
(``autopyfactory --foreground``) on the Local batch plugins, with its WMS numbers
from a PanDA double; its pilots succeed (``SOAK_OK_*``), fault (``SOAK_FAULT_*``)
or hang (``SOAK_HANG_*``). While it runs, the soak calls the API and the admin
API, pauses and resumes queues, reloads a changed queues.conf (admin reload and
SIGHUP in turn) and makes PanDA fail for a minute every few minutes.

Every 10 s it records the daemon's RSS, threads and open files; every 30 s the
cycle lag (how far past ``apfqueue.sleep`` the oldest queue's last cycle is).
At the end it reads every cycle the factory recorded (its SQLite store) and
checks the safety invariants:

- unknown -> 0: a cycle that did not know its WMS or batch numbers submitted nothing;
- ceilings: no cycle submitted more than it decided or than ``sched.maxpercycle.maximum``;
- no double submission: no cycle saw more pending pilots than PanDA's activated jobs
  (Ready plans ``activated - pending``: a double submission shows as too many pending),
  and no batch id was submitted twice;
- no cycle failed with an exception, no queue thread died.

It fails (exit 1) on any violation or growth: RSS slope after warm-up above
1 MB per 10 minutes, or threads / open files higher at the end than after
warm-up (medians of the first and last post-warm-up thirds, a small tolerance
for what comes and goes). Results go to ``docs/soak.json`` and ``docs/soak.png``.

    SOAK_MINUTES=10 make soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from autopyfactory import localbatch
from autopyfactory.queue import KEEP_RECORDS
from bench.common import REPO, factory_id, machine, section, write_config
from tests.panda_double import PandaDouble
from tests.waiting import stop_process

QUEUES = 1000
SLEEP = 20  # apfqueue.sleep: 1,000 queues make about 50 cycles a second
MAXPERCYCLE = 5
WARMUP_FRACTION = 0.3  # of the run, at least WARMUP_MIN seconds, left out of the trend
WARMUP_MIN = 180.0
SAMPLE_EVERY = 10.0
LAG_EVERY = 30.0
RSS_SLOPE_LIMIT_MB_PER_10MIN = 1.0
THREAD_TOLERANCE = 3
FD_TOLERANCE = 8
PANDA_OUTAGE_EVERY = 300.0
PANDA_OUTAGE_FOR = 100.0  # longer than wmsstatus.panda.maxage: the queues go unknown
RELOAD_EVERY = 150.0

PILOT = """#!/bin/sh
# soak pilot: behaves as its queue's name says
echo "$$" > "{pids}/$$"
case "$FACTORYQUEUE" in
  SOAK_OK_*) sleep 1; rc=0 ;;
  SOAK_FAULT_*) echo "no payload" >&2; rc=1 ;;
  SOAK_HANG_*) exec sleep 100000 ;;
esac
rm -f "{pids}/$$"
exit $rc
"""


def kind_of(i: int) -> str:
    return "OK" if i % 10 < 6 else "FAULT" if i % 10 < 8 else "HANG"


def queue_name(i: int) -> str:
    return f"SOAK_{kind_of(i)}_{i:04d}"


def activated(i: int) -> int:
    """Jobs waiting at the queue's site: hanging queues fill their slots; a third of the others have one."""
    return 2 if kind_of(i) == "HANG" else 1 if i % 3 == 0 else 0


def queues_conf(url: str, pilot: Path, maxpercycle: dict[str, int] | None = None) -> str:
    common = {
        "wmsstatusplugin": "Panda", "wmsstatus.panda.url": url,
        "batchstatusplugin": "Local", "batchsubmitplugin": "Local",
        "batchsubmit.local.maxrunning": 2,
        "executable": str(pilot), "executable.arguments": "",
        "schedplugin": "Ready, MaxPerCycle", "sched.maxpercycle.maximum": MAXPERCYCLE,
        "apfqueue.sleep": SLEEP,
    }
    text = section("DEFAULT", common)
    for i in range(QUEUES):
        extra = (maxpercycle or {}).get(queue_name(i))
        text += f"[{queue_name(i)}]\n" + (f"sched.maxpercycle.maximum = {extra}\n" if extra else "") + "\n"
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """RSS, threads and open files of a pid, from /proc."""

    def __init__(self, pid: int):
        self.pid = pid

    def sample(self) -> dict:
        status = Path(f"/proc/{self.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
                "fds": len(os.listdir(f"/proc/{self.pid}/fd"))}


def slope_per_10min(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var * 600


def check_cycles(store: Path, factory: str) -> tuple[dict, list[str]]:
    """Every recorded cycle against the invariants; (counts, violations)."""
    violations: list[str] = []
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    counts = {"cycles": 0, "submitted": 0, "unknown_cycles": 0, "submitting_cycles": 0}
    want = {queue_name(i): activated(i) for i in range(QUEUES)}
    for queue, raw in conn.execute("SELECT queue, record FROM cycles"):
        record = json.loads(raw)
        counts["cycles"] += 1
        submitted, decided = record.get("submitted", 0), record.get("decided", 0)
        counts["submitted"] += submitted
        counts["submitting_cycles"] += bool(submitted)
        wms, batch = record.get("wms"), record.get("batch")
        where = f"{queue} cycle {record.get('number')}"
        if wms is None or batch is None:
            counts["unknown_cycles"] += 1
            if submitted:
                violations.append(f"{where}: submitted {submitted} with unknown numbers (wms {wms}, batch {batch})")
        if submitted > max(decided, 0) or submitted > MAXPERCYCLE + 1:
            violations.append(f"{where}: submitted {submitted}, decided {decided}, ceiling {MAXPERCYCLE + 1}")
        if batch is not None and batch.get("pending", 0) > want.get(queue, 0):
            violations.append(f"{where}: {batch['pending']} pilots pending for {want.get(queue)} activated jobs")
    seen: set[str] = set()
    for queue, ids in conn.execute("SELECT queue, ids FROM submissions WHERE kind = 'submit'"):
        for jobid in json.loads(ids):
            if jobid in seen:
                violations.append(f"{queue}: pilot {jobid} submitted twice")
            seen.add(jobid)
    conn.close()
    counts["pilots"] = len(seen)
    return counts, violations


def plot(samples: list[dict], lags: list[dict], warmup: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    minutes = [s["t"] / 60 for s in samples]
    for ax, key, label in zip(axes[:3], ("rss_mb", "threads", "fds"),
                              ("RSS (MB)", "threads", "open files"), strict=True):
        ax.plot(minutes, [s[key] for s in samples], lw=1)
        ax.set_ylabel(label)
        ax.axvline(warmup / 60, color="grey", ls=":", lw=1)
        ax.grid(alpha=0.3)
    axes[3].plot([lag["t"] / 60 for lag in lags], [lag["max_lag"] for lag in lags], lw=1, label="max")
    axes[3].plot([lag["t"] / 60 for lag in lags], [lag["p95_lag"] for lag in lags], lw=1, label="p95")
    axes[3].set_ylabel("cycle lag (s)")
    axes[3].legend(loc="upper right")
    axes[3].grid(alpha=0.3)
    axes[3].set_xlabel("minutes since start (dotted: end of warm-up)")
    fig.suptitle(f"soak: {QUEUES} queues, apfqueue.sleep {SLEEP} s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def lag_sample(api: str, t: float) -> dict:
    answer = requests.get(f"{api}/api/v1/queues", timeout=60)
    answer.raise_for_status()  # an error answer is an API error of the soak, not a crash of it
    queues = answer.json()["queues"]
    now = time.time()
    lags = []
    for q in queues:
        if q.get("last_cycle") and not q.get("paused"):
            last = time.mktime(time.strptime(q["last_cycle"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            lags.append(max(0.0, now - last - SLEEP))
    lags.sort()
    cycled = sum(1 for q in queues if q.get("cycle_count"))
    return {"t": t, "max_lag": round(lags[-1], 1) if lags else None,
            "p95_lag": round(lags[int(len(lags) * 0.95) - 1], 1) if lags else None, "queues_cycled": cycled,
            "health": {level: sum(1 for q in queues if q.get("health") == level)
                       for level in ("ok", "warning", "critical")}}


def run(minutes: float, out: Path) -> int:
    root = Path(tempfile.mkdtemp(prefix="apf-soak-"))
    pids = root / "pilot-pids"
    pids.mkdir()
    pilot = root / "pilot.sh"
    pilot.write_text(PILOT.format(pids=pids))
    pilot.chmod(0o755)
    panda = PandaDouble()
    panda.stats = {"success": True, "message": "",
                   "data": {queue_name(i): {"activated": activated(i), "running": 0} for i in range(QUEUES)}}
    panda.up()
    token = root / "admin.token"
    token.write_text(secrets.token_hex(16))
    token.chmod(0o600)
    port = free_port()
    fid = factory_id("soak")
    conf = write_config(root, queues_conf(panda.url, pilot), {
        "logserver.enabled": "true", "logserver.port": port, "admin.tokenfile": str(token),
        "wmsstatus.panda.sleep": 30, "wmsstatus.panda.maxage": 60,
        "batchstatus.local.sleep": 20, "batchstatus.local.maxage": 120,
    }, fid)
    log = root / "factory.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    daemon = subprocess.Popen([sys.executable, "-m", "autopyfactory.cli.daemon", "--conf", str(conf), "--foreground",
                               "--log", str(log)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    api = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token.read_text()}"}
    proc = Process(daemon.pid)
    samples: list[dict] = []
    lags: list[dict] = []
    calls = {"api": 0, "admin": 0, "reloads": 0, "reload_failures": 0, "panda_outages": 0, "api_errors": 0}
    start = time.monotonic()
    duration = minutes * 60
    # bounded histories fill first: the queue's in-memory cycle records take KEEP_RECORDS cycles,
    # the Local batch system's memory of finished pilots its REMEMBER_FINISHED seconds
    warmup = max(WARMUP_MIN, WARMUP_FRACTION * duration, 1.1 * KEEP_RECORDS * SLEEP,
                 1.1 * localbatch.REMEMBER_FINISHED)
    rng = random.Random(14)
    next_sample = next_lag = 0.0
    next_outage, next_reload, next_admin = PANDA_OUTAGE_EVERY, RELOAD_EVERY, 20.0
    outage_until = None
    reload_by_signal = False
    try:
        while (t := time.monotonic() - start) < duration:
            if daemon.poll() is not None:
                raise RuntimeError(f"the factory exited ({daemon.returncode}): {daemon.stderr.read().decode()[-2000:]}")
            if t >= next_sample:
                samples.append({"t": round(t, 1), **proc.sample()})
                next_sample += SAMPLE_EVERY
            try:
                if t >= next_lag and t > 30:
                    lags.append(lag_sample(api, t))
                    calls["api"] += 1
                    next_lag += LAG_EVERY
                if t >= next_admin:
                    name = queue_name(rng.randrange(QUEUES))
                    for path in ("/api/v1/factory", "/metrics", f"/api/v1/queues/{name}?cycles=5", "/"):
                        requests.get(api + path, timeout=60).raise_for_status()
                        calls["api"] += 1
                    for action in ("pause", "resume"):
                        requests.post(f"{api}/api/v1/admin/queues/{name}/{action}", headers=auth,
                                      timeout=60).raise_for_status()
                        calls["admin"] += 1
                    next_admin += 20.0
                if t >= next_reload:
                    changed = {queue_name(rng.randrange(QUEUES)): rng.choice((3, 4)) for _ in range(10)}
                    (root / "queues.conf").write_text(queues_conf(panda.url, pilot, changed))
                    if reload_by_signal:
                        daemon.send_signal(signal.SIGHUP)
                    else:
                        answer = requests.post(f"{api}/api/v1/admin/reload", headers=auth, timeout=300)
                        calls["reload_failures"] += answer.status_code != 200
                        calls["admin"] += 1
                    reload_by_signal = not reload_by_signal
                    calls["reloads"] += 1
                    next_reload += RELOAD_EVERY
            except requests.RequestException as exc:
                calls["api_errors"] += 1
                print(f"soak: API call failed at {t:.0f}s: {exc}", file=sys.stderr)
            if t >= next_outage and outage_until is None:
                panda.mode, outage_until = "http500", t + PANDA_OUTAGE_FOR
                calls["panda_outages"] += 1
            if outage_until is not None and t >= outage_until:
                panda.mode, outage_until = "good", None
                next_outage += PANDA_OUTAGE_EVERY
            time.sleep(1.0)
        panda.mode = "good"
    finally:
        stop_process(daemon, timeout=120)
        for name in os.listdir(pids):  # hanging pilots run on after the factory (as on a real batch system)
            try:
                os.killpg(int(name), signal.SIGKILL)
            except (ProcessLookupError, ValueError, PermissionError):
                pass
        panda.close()

    counts, violations = check_cycles(conf.parent / "apf.sqlite", fid)
    text = log.read_text(errors="replace")
    for marker in ("cycle failed", "Traceback", "thread died", "restarting queue"):
        if marker in text:
            violations.append(f"factory log has {text.count(marker)} line(s) with {marker!r}")
    if calls["api_errors"]:
        violations.append(f"{calls['api_errors']} API call(s) failed")
    if calls["reload_failures"]:
        violations.append(f"{calls['reload_failures']} reload(s) rejected")
    after = [s for s in samples if s["t"] >= warmup]
    third = max(1, len(after) // 3)
    early, late = after[:third], after[-third:]
    trend = {
        "rss_slope_mb_per_10min": round(slope_per_10min([(s["t"], s["rss_mb"]) for s in after]), 3),
        "rss_slope_last_half_mb_per_10min": round(
            slope_per_10min([(s["t"], s["rss_mb"]) for s in after[len(after) // 2:]]), 3),
        "rss_mb_after_warmup": round(after[0]["rss_mb"], 1) if after else None,
        "rss_mb_end": round(samples[-1]["rss_mb"], 1) if samples else None,
        "threads_early_median": statistics.median(s["threads"] for s in early) if early else None,
        "threads_late_median": statistics.median(s["threads"] for s in late) if late else None,
        "fds_early_median": statistics.median(s["fds"] for s in early) if early else None,
        "fds_late_median": statistics.median(s["fds"] for s in late) if late else None,
        "max_cycle_lag_s": max((lag["max_lag"] or 0 for lag in lags if lag["t"] >= warmup), default=None),
    }
    growth = []
    if trend["rss_slope_mb_per_10min"] > RSS_SLOPE_LIMIT_MB_PER_10MIN:
        growth.append(f"RSS grows {trend['rss_slope_mb_per_10min']} MB per 10 minutes after warm-up")
    if early and trend["threads_late_median"] > trend["threads_early_median"] + THREAD_TOLERANCE:
        growth.append(f"threads grow: {trend['threads_early_median']} -> {trend['threads_late_median']}")
    if early and trend["fds_late_median"] > trend["fds_early_median"] + FD_TOLERANCE:
        growth.append(f"open files grow: {trend['fds_early_median']} -> {trend['fds_late_median']}")
    result = {
        "minutes": minutes, "queues": QUEUES, "apfqueue_sleep_s": SLEEP, "warmup_s": warmup,
        "machine": machine(), "calls": calls, "cycles": counts, "trend": trend,
        "violations": violations[:50], "violation_count": len(violations), "growth": growth,
        "ok": not violations and not growth, "samples": samples, "lags": lags,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(samples, lags, warmup, out / "soak.png")
    summary = {k: v for k, v in result.items() if k not in ("samples", "lags", "machine")}
    print(json.dumps(summary, indent=2))
    print(f"soak: {'PASSED' if result['ok'] else 'FAILED'}; working files in {root}")
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "60")))
    p.add_argument("--out", type=Path, default=REPO / "docs")
    args = p.parse_args(argv)
    return run(args.minutes, args.out)


if __name__ == "__main__":
    sys.exit(main())
