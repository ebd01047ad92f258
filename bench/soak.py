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

**On real Slurm** (``SOAK_SLURM=1 make soak``, or ``--slurm``): the same traffic
against the test cluster (tests/slurmcluster.py) with ``SOAK_QUEUES`` queues
(default 500) on the Slurm plugins, and a ``kill -9`` of the daemon every
``SOAK_KILL_EVERY`` minutes (default 20), restarted at once on the same store.
Pilots are short (OK: 2 s, FAULT: exit 1, HANG: 20 s; a third of the queues have one job waiting) so the shared cluster is
never held. Every minute (less than Slurm's ``MinJobAge``, 300 s) it reads
``squeue -t all`` and keeps every job carrying this factory's tag: the batch
system's own account. At the end the factory's record (store ``submissions``)
must equal it: a job in Slurm the factory did not record is *lost*, one recorded
but never in Slurm is a *phantom*, one recorded twice is *doubled*. (``sacct``
would be the usual account, but the test cluster runs without accounting
storage.) Growth is judged per daemon life, after ``LIFE_WARMUP`` seconds of each
and once the queues' window of finished pilots (``FINISHED_WINDOW``, one hour, read
back from the store at every restart) has filled: RSS by the peak of each
``memory.TRIM_EVERY`` period (the daemon gives free pages back every 5 minutes, a
sawtooth of a few MB), its slope *within* lives (one intercept per life, so a
restart's drop is not read as a fall nor a later life's higher level as a rise) and
*across* lives (each life's peak), both at most the same 1 MB per 10 minutes.
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

from autopyfactory import localbatch, memory
from autopyfactory.queue import FINISHED_WINDOW, KEEP_RECORDS
from bench.common import REPO, factory_id, machine, section, write_config
from tests.panda_double import PandaDouble
from tests.waiting import stop_process, wait_for

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
SLURM_QUEUES = 500
SLURM_SLEEP = 60  # apfqueue.sleep on Slurm: one sbatch per submitting queue per cycle on a shared cluster
KILL_EVERY_MIN = 20.0
LIFE_WARMUP = 300.0  # seconds of each daemon life left out of the growth checks (Slurm mode): it reads its
# pilots and the last hour of finished ones back, and RSS settles within about 4 minutes
ACCOUNT_EVERY = 60.0  # squeue -t all: less than MinJobAge (300 s), so every job is seen once at least

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


SLURM_PILOT = """#!/bin/sh
# soak pilot on Slurm: short, so the shared test cluster is never held
case "$FACTORYQUEUE" in
  SOAK_OK_*) sleep 2; exit 0 ;;
  SOAK_FAULT_*) echo "no payload" >&2; exit 1 ;;
  SOAK_HANG_*) sleep 20; exit 0 ;;
esac
"""


class Setup:
    """What differs between the Local soak and the Slurm soak."""

    def __init__(self, slurm=None, queues: int = QUEUES, kill_every: float | None = None):
        self.slurm = slurm  # a tests.slurmcluster.SlurmCluster, or None: Local batch plugins
        self.queues = queues
        self.sleep = SLURM_SLEEP if slurm is not None else SLEEP
        self.kill_every = kill_every  # seconds between kill -9 of the daemon; None: never

    def batch_keys(self) -> dict[str, object]:
        if self.slurm is None:
            return {"batchstatusplugin": "Local", "batchsubmitplugin": "Local", "batchsubmit.local.maxrunning": 2}
        return {"batchstatusplugin": "Slurm", "batchstatus.slurm.slurmconf": self.slurm.conf,
                "batchsubmitplugin": "Slurm", "batchsubmit.slurm.slurmconf": self.slurm.conf,
                "batchqueue": self.slurm.partition}

    def status_keys(self) -> dict[str, object]:
        if self.slurm is None:
            return {"batchstatus.local.sleep": 20, "batchstatus.local.maxage": 120}
        return {"batchstatus.slurm.sleep": 20, "batchstatus.slurm.maxage": 120}


def kind_of(i: int) -> str:
    return "OK" if i % 10 < 6 else "FAULT" if i % 10 < 8 else "HANG"


def queue_name(i: int) -> str:
    return f"SOAK_{kind_of(i)}_{i:04d}"


def activated(i: int, slurm: bool = False) -> int:
    """Jobs waiting at the queue's site: hanging queues fill their slots; a third of the others have one.
    On Slurm a third of every kind has one: the shared cluster's 32 slots are never taken."""
    if slurm:
        return 1 if i % 3 == 0 else 0
    return 2 if kind_of(i) == "HANG" else 1 if i % 3 == 0 else 0


def queues_conf(setup: Setup, url: str, pilot: Path, maxpercycle: dict[str, int] | None = None) -> str:
    common = {
        "wmsstatusplugin": "Panda", "wmsstatus.panda.url": url,
        **setup.batch_keys(),
        "executable": str(pilot), "executable.arguments": "",
        "schedplugin": "Ready, MaxPerCycle", "sched.maxpercycle.maximum": MAXPERCYCLE,
        "apfqueue.sleep": setup.sleep,
    }
    text = section("DEFAULT", common)
    for i in range(setup.queues):
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


def rss_growth_per_life(samples: list[dict], life_warmup: float, run_warmup: float,
                        period: float) -> dict:
    """RSS growth of a run with restarts, in MB per 10 minutes: ``within`` lives and ``across`` them.

    Only samples at least ``life_warmup`` into their life and ``run_warmup`` into the run count.
    Each life's samples are cut into ``period``-long bins (the trim period) and a bin is
    represented by its peak, so the trim sawtooth is not read as growth or fall. ``within``
    is the slope of those peaks with one intercept per life (a leak in a running daemon);
    ``across`` the slope of each life's highest peak over the lives' start (state that
    survives a restart, e.g. the store).
    """
    lives: list[list[dict]] = []
    for s in samples:
        if not lives or s["life_t"] < lives[-1][-1]["life_t"]:
            lives.append([])
        lives[-1].append(s)
    within: list[tuple[float, float]] = []  # (t, rss) less the life's means
    across: list[tuple[float, float]] = []
    for life in lives:
        bins: dict[int, tuple[float, float]] = {}
        for s in life:
            if s["life_t"] >= life_warmup and s["t"] >= run_warmup:
                key = int((s["life_t"] - life_warmup) // period)
                if key not in bins or s["rss_mb"] > bins[key][1]:
                    bins[key] = (s["t"], s["rss_mb"])
        peaks = list(bins.values())
        if not peaks:
            continue
        across.append((life[0]["t"] - life[0]["life_t"], max(p[1] for p in peaks)))
        if len(peaks) >= 2:
            mt, mr = statistics.fmean(p[0] for p in peaks), statistics.fmean(p[1] for p in peaks)
            within.extend((t - mt, r - mr) for t, r in peaks)
    var = sum(t * t for t, _ in within)
    return {"within": round(sum(t * r for t, r in within) / var * 600, 3) if var else 0.0,
            "across": round(slope_per_10min(across), 3), "lives_judged": len(across),
            "bins_judged": len(within)}


def check_cycles(store: Path, queues: int, slurm: bool = False) -> tuple[dict, list[str]]:
    """Every recorded cycle against the invariants; (counts, violations)."""
    violations: list[str] = []
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    counts = {"cycles": 0, "submitted": 0, "unknown_cycles": 0, "submitting_cycles": 0}
    want = {queue_name(i): activated(i, slurm) for i in range(queues)}
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


def slurm_account(slurm, fid: str, jobs: dict[str, str]) -> None:
    """Add to ``jobs`` (id -> state) every job of factory ``fid`` that squeue -t all shows now."""
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%k"], capture_output=True, text=True,
                         env={**os.environ, **slurm.env}, timeout=120, check=True).stdout
    for row in out.splitlines():
        jobid, state, comment = (row.split("|", 2) + ["", ""])[:3]
        if comment.startswith(f"apf:{fid}:"):
            jobs[jobid] = state


def compare_with_slurm(store: Path, jobs: dict[str, str]) -> tuple[dict, list[str]]:
    """The factory's record of its pilots against Slurm's: (counts, violations)."""
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    recorded: dict[str, int] = {}
    counted = 0
    for count, ids in conn.execute("SELECT count, ids FROM submissions WHERE kind = 'submit'"):
        counted += count
        for jobid in json.loads(ids):
            recorded[jobid] = recorded.get(jobid, 0) + 1
    conn.close()
    lost = sorted(set(jobs) - set(recorded))
    phantom = sorted(set(recorded) - set(jobs))
    doubled = sorted(j for j, n in recorded.items() if n > 1)
    violations = [f"{len(lost)} pilot(s) in Slurm the factory did not record (lost): {lost[:10]}"] if lost else []
    violations += [f"{len(phantom)} pilot(s) recorded but never in Slurm: {phantom[:10]}"] if phantom else []
    violations += [f"{len(doubled)} pilot(s) recorded twice: {doubled[:10]}"] if doubled else []
    if counted != len(recorded):
        violations.append(f"the factory counted {counted} pilots submitted but recorded {len(recorded)} ids")
    return {"slurm_jobs": len(jobs), "factory_recorded": len(recorded), "factory_counted": counted,
            "lost": len(lost), "phantom": len(phantom), "doubled": len(doubled)}, violations


def cancel_own_jobs(slurm, fid: str) -> None:
    """scancel this run's pilots that are still pending or running (only ours: the cluster is shared)."""
    out = subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING", "-o", "%F|%k"], capture_output=True, text=True,
                         env={**os.environ, **slurm.env}, timeout=120).stdout
    jobs = sorted({row.split("|", 1)[0] for row in out.splitlines() if f"|apf:{fid}:" in row})
    if jobs:
        subprocess.run(["scancel", *jobs], env={**os.environ, **slurm.env}, timeout=120, capture_output=True)


def plot(samples: list[dict], lags: list[dict], warmup: float, path: Path, title: str, kills: list[float]) -> None:
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
    for kill in kills:  # red: kill -9 and restart
        for ax in axes:
            ax.axvline(kill / 60, color="red", ls="--", lw=0.6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).ok
    except requests.RequestException:
        return False


def lag_sample(api: str, t: float, sleep: float) -> dict:
    answer = requests.get(f"{api}/api/v1/queues", timeout=60)
    answer.raise_for_status()  # an error answer is an API error of the soak, not a crash of it
    queues = answer.json()["queues"]
    now = time.time()
    lags = []
    for q in queues:
        if q.get("last_cycle") and not q.get("paused"):
            last = time.mktime(time.strptime(q["last_cycle"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            lags.append(max(0.0, now - last - sleep))
    lags.sort()
    cycled = sum(1 for q in queues if q.get("cycle_count"))
    return {"t": t, "max_lag": round(lags[-1], 1) if lags else None,
            "p95_lag": round(lags[int(len(lags) * 0.95) - 1], 1) if lags else None, "queues_cycled": cycled,
            "health": {level: sum(1 for q in queues if q.get("health") == level)
                       for level in ("ok", "warning", "critical")}}


def run(minutes: float, out: Path, setup: Setup) -> int:
    root = Path(tempfile.mkdtemp(prefix="apf-soak-"))
    pids = root / "pilot-pids"
    pids.mkdir()
    pilot = root / "pilot.sh"
    pilot.write_text(SLURM_PILOT if setup.slurm is not None else PILOT.format(pids=pids))
    pilot.chmod(0o755)
    panda = PandaDouble()
    panda.stats = {"success": True, "message": "",
                   "data": {queue_name(i): {"activated": activated(i, setup.slurm is not None), "running": 0}
                            for i in range(setup.queues)}}
    panda.up()
    token = root / "admin.token"
    token.write_text(secrets.token_hex(16))
    token.chmod(0o600)
    port = free_port()
    fid = factory_id("soak")
    conf = write_config(root, queues_conf(setup, panda.url, pilot), {
        "logserver.enabled": "true", "logserver.port": port, "admin.tokenfile": str(token),
        "wmsstatus.panda.sleep": 30, "wmsstatus.panda.maxage": 60, **setup.status_keys(),
    }, fid)
    log = root / "factory.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "autopyfactory.cli.daemon", "--conf", str(conf), "--foreground", "--log", str(log)]

    def start_daemon() -> subprocess.Popen:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    daemon = start_daemon()
    api = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token.read_text()}"}
    proc = Process(daemon.pid)
    samples: list[dict] = []
    lags: list[dict] = []
    jobs: dict[str, str] = {}  # Slurm's account of this factory's pilots
    kills: list[float] = []
    calls = {"api": 0, "admin": 0, "reloads": 0, "reload_failures": 0, "panda_outages": 0, "api_errors": 0,
             "kills": 0}
    start = time.monotonic()
    life_start = 0.0
    duration = minutes * 60
    if setup.kill_every is None:
        # bounded histories fill first: the queue's in-memory cycle records take KEEP_RECORDS cycles,
        # the Local batch system's memory of finished pilots its REMEMBER_FINISHED seconds
        warmup = max(WARMUP_MIN, WARMUP_FRACTION * duration, 1.1 * KEEP_RECORDS * setup.sleep,
                     1.1 * localbatch.REMEMBER_FINISHED)
    else:
        warmup = LIFE_WARMUP  # of every daemon life
    rng = random.Random(14)
    next_sample = next_lag = next_account = 0.0
    next_outage, next_reload, next_admin = PANDA_OUTAGE_EVERY, RELOAD_EVERY, 20.0
    next_kill = setup.kill_every or float("inf")
    outage_until = None
    reload_by_signal = False
    try:
        while (t := time.monotonic() - start) < duration:
            if daemon.poll() is not None:
                raise RuntimeError(f"the factory exited ({daemon.returncode}): {daemon.stderr.read().decode()[-2000:]}")
            if t >= next_kill:  # kill -9 and start again on the same store, as a crash and systemd would
                daemon.kill()
                daemon.wait()
                daemon = start_daemon()
                proc, life_start = Process(daemon.pid), t
                calls["kills"] += 1
                next_kill += setup.kill_every
                wait_for(lambda: answers(api + "/api/v1/factory"), timeout=300, what="the restarted factory's API")
                kills.append(t)
                continue
            if t >= next_sample:
                samples.append({"t": round(t, 1), "life_t": round(t - life_start, 1), **proc.sample()})
                next_sample += SAMPLE_EVERY
            if setup.slurm is not None and t >= next_account:
                slurm_account(setup.slurm, fid, jobs)
                next_account += ACCOUNT_EVERY
            try:
                if t >= next_lag and t - life_start > 30:
                    lags.append(lag_sample(api, t, setup.sleep))
                    calls["api"] += 1
                    next_lag += LAG_EVERY
                if t >= next_admin:
                    name = queue_name(rng.randrange(setup.queues))
                    for path in ("/api/v1/factory", "/metrics", f"/api/v1/queues/{name}?cycles=5", "/"):
                        requests.get(api + path, timeout=60).raise_for_status()
                        calls["api"] += 1
                    for action in ("pause", "resume"):
                        url = f"{api}/api/v1/admin/queues/{name}/{action}"
                        answer = requests.post(url, headers=auth, timeout=60)
                        if answer.status_code == 503 and "Retry-After" in answer.headers:  # starting: as a script would
                            time.sleep(min(float(answer.headers["Retry-After"]), 30))
                            answer = requests.post(url, headers=auth, timeout=60)
                        answer.raise_for_status()
                        calls["admin"] += 1
                    next_admin += 20.0
                if t >= next_reload:
                    changed = {queue_name(rng.randrange(setup.queues)): rng.choice((3, 4)) for _ in range(10)}
                    (root / "queues.conf").write_text(queues_conf(setup, panda.url, pilot, changed))
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
        if setup.slurm is not None:
            slurm_account(setup.slurm, fid, jobs)  # the last submissions too
            cancel_own_jobs(setup.slurm, fid)
        for name in os.listdir(pids):  # hanging pilots run on after the factory (as on a real batch system)
            try:
                os.killpg(int(name), signal.SIGKILL)
            except (ProcessLookupError, ValueError, PermissionError):
                pass
        panda.close()

    store = conf.parent / "apf.sqlite"
    counts, violations = check_cycles(store, setup.queues, setup.slurm is not None)
    if setup.slurm is not None:
        account, mismatches = compare_with_slurm(store, jobs)
        counts.update(account)
        violations += mismatches
    text = log.read_text(errors="replace")
    for marker in ("cycle failed", "Traceback", "thread died", "restarting queue"):
        if marker in text:
            violations.append(f"factory log has {text.count(marker)} line(s) with {marker!r}")
    if calls["api_errors"]:
        violations.append(f"{calls['api_errors']} API call(s) failed")
    if calls["reload_failures"]:
        violations.append(f"{calls['reload_failures']} reload(s) rejected")
    after = [s for s in samples if (s["life_t"] if setup.kill_every else s["t"]) >= warmup]
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
    if setup.kill_every:
        per_life = rss_growth_per_life(samples, warmup, 1.1 * FINISHED_WINDOW, memory.TRIM_EVERY)
        trend["rss_per_life"] = per_life
        if per_life["lives_judged"] < 2:
            growth.append(f"too short to judge RSS: {per_life['lives_judged']} life after the first hour")
        for where in ("within", "across"):
            if per_life[where] > RSS_SLOPE_LIMIT_MB_PER_10MIN:
                growth.append(f"RSS grows {per_life[where]} MB per 10 minutes {where} lives after warm-up")
    elif trend["rss_slope_mb_per_10min"] > RSS_SLOPE_LIMIT_MB_PER_10MIN:
        growth.append(f"RSS grows {trend['rss_slope_mb_per_10min']} MB per 10 minutes after warm-up")
    if early and trend["threads_late_median"] > trend["threads_early_median"] + THREAD_TOLERANCE:
        growth.append(f"threads grow: {trend['threads_early_median']} -> {trend['threads_late_median']}")
    if early and trend["fds_late_median"] > trend["fds_early_median"] + FD_TOLERANCE:
        growth.append(f"open files grow: {trend['fds_early_median']} -> {trend['fds_late_median']}")
    mode = "slurm" if setup.slurm is not None else "local"
    result = {
        "mode": mode, "minutes": minutes, "queues": setup.queues, "apfqueue_sleep_s": setup.sleep,
        "kill_every_s": setup.kill_every, "kills_at_s": [round(k, 1) for k in kills], "warmup_s": warmup, "warmup_per_life": setup.kill_every is not None,
        "machine": machine(), "calls": calls, "cycles": counts, "trend": trend,
        "violations": violations[:50], "violation_count": len(violations), "growth": growth,
        "ok": not violations and not growth, "samples": samples, "lags": lags,
    }
    out.mkdir(parents=True, exist_ok=True)
    name = "soak" if mode == "local" else "soak-slurm"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    every = f", kill -9 every {setup.kill_every / 60:g} min" if setup.kill_every else ""
    plot(samples, lags, warmup if not setup.kill_every else 0.0, out / f"{name}.png",
         f"soak ({mode}): {setup.queues} queues, apfqueue.sleep {setup.sleep} s{every}", kills)
    summary = {k: v for k, v in result.items() if k not in ("samples", "lags", "machine")}
    print(json.dumps(summary, indent=2))
    print(f"soak: {'PASSED' if result['ok'] else 'FAILED'}; working files in {root}")
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "60")))
    p.add_argument("--out", type=Path, default=REPO / "docs")
    p.add_argument("--slurm", action="store_true", default=os.environ.get("SOAK_SLURM", "") not in ("", "0"),
                   help="on the real Slurm test cluster (SOAK_SLURM=1)")
    p.add_argument("--queues", type=int, default=int(os.environ.get("SOAK_QUEUES", "0")) or None,
                   help=f"queues (default {QUEUES}; {SLURM_QUEUES} on Slurm)")
    p.add_argument("--kill-every", type=float, default=float(os.environ.get("SOAK_KILL_EVERY", KILL_EVERY_MIN)),
                   metavar="MINUTES", help="Slurm: kill -9 the daemon this often and restart it (0: never)")
    args = p.parse_args(argv)
    if not args.slurm:
        return run(args.minutes, args.out, Setup(queues=args.queues or QUEUES))
    from tests.slurmcluster import slurm_cluster

    with slurm_cluster() as cluster:
        return run(args.minutes, args.out, Setup(cluster, args.queues or SLURM_QUEUES,
                                                 args.kill_every * 60 or None))


if __name__ == "__main__":
    sys.exit(main())
